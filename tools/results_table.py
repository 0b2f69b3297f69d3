"""Evaluates every shipped model on Set5 and Set14 and prints README's results table (markdown).

Each cell is what `generate.py --eval_dir=<data_dir>/<set> --scale=<r> --channels=<mode>` reports for the
shipped model (mean Y-PSNR in dB, border r), and the bicubic row comes from the same runs:

  python -m tools.results_table --data_dir=data --json=result/tables.json
"""
import os
import sys

from absl import app
from absl import flags

from superres import checkpoints
from superres import evaluation
from superres import files
from superres import inference

FLAGS = flags.FLAGS
EVAL_SETS = ('Set5', 'Set14')


def define_flags():
  flags.DEFINE_string('data_dir', 'data', 'Folder holding the Set5 and Set14 folders.')
  flags.DEFINE_string('output_dir', 'result/tables', 'Where the evaluated images are saved, one folder per '
                      'model and set.')
  flags.DEFINE_string('json', '', 'Also write every score to this JSON file.')


def evaluate_shipped_models(data_dir, output_dir):
  """{(channels, scale): {set name: evaluation.evaluate report}} for each shipped model that exists."""
  reports = {}
  for channels, scale in checkpoints.SHIPPED_MODELS:
    checkpoint_dir = checkpoints.shipped_model_dir(channels, scale)
    if not os.path.isdir(checkpoint_dir):
      print(f'{checkpoint_dir}: not shipped yet, left out', file=sys.stderr)
      continue
    upscaler = inference.Upscaler.from_checkpoint(checkpoint_dir, scale, channels)
    reports[channels, scale] = {}
    for eval_set in EVAL_SETS:
      images_dir = os.path.join(output_dir, f'{eval_set.lower()}_{channels}_x{scale}')
      files.ensure_writable_dir(images_dir)
      reports[channels, scale][eval_set] = evaluation.evaluate(upscaler, os.path.join(data_dir, eval_set),
                                                               images_dir)
  return reports


def format_results(reports):
  """Markdown: one row per model, with its scale's bicubic row (from the same runs) above it."""
  lines = ['| model | scale | ' + ' | '.join(f'{name} PSNR / SSIM' for name in EVAL_SETS) + ' |',
           '|---|---|' + '---|' * len(EVAL_SETS)]
  bicubic_done = set()
  for (channels, scale), by_set in reports.items():
    if scale not in bicubic_done:
      bicubic_done.add(scale)
      cells = [f'{report["mean"]["bicubic_psnr_y"]:.2f} / {report["mean"]["bicubic_ssim_y"]:.4f}'
               for report in by_set.values()]
      lines.append(f'| bicubic | x{scale} | ' + ' | '.join(cells) + ' |')
    cells = [f'**{report["mean"]["psnr_y"]:.2f}** / {report["mean"]["ssim_y"]:.4f}'
             for report in by_set.values()]
    lines.append(f'| ESPCN `{channels}` (`checkpoint/espcn_{channels}_x{scale}`) | x{scale} | '
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  files.ensure_writable_parent(FLAGS.json)
  for eval_set in EVAL_SETS:
    if not os.path.isdir(os.path.join(FLAGS.data_dir, eval_set)):
      raise files.InputError(f'{os.path.join(FLAGS.data_dir, eval_set)}: no such folder (--data_dir)')
  reports = evaluate_shipped_models(FLAGS.data_dir, FLAGS.output_dir)
  print(format_results(reports))
  if FLAGS.json:
    files.write_json({f'{channels}_x{scale}': {name: report['mean'] for name, report in by_set.items()}
                      for (channels, scale), by_set in reports.items()}, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
