"""Draws what minutes of training buy: validation PSNR against minutes, from train.py runs' own logs.

Each run folder's validation.jsonl gives, for every validation, the PSNR (Y, border r, on --val_dir of the
run) and the training seconds so far; bicubic's PSNR on the same images, computed here, is drawn as a line
for each scale. The command also prints, per run, the best validation PSNR reached within each of
--minutes (the weights train.py keeps in best/ at that moment), and with --steps within each of those
steps, to compare schedules step for step whatever else shared the machine:

  python -m tools.training_curve --runs="y x3 recipe=checkpoint/espcn_y_x3" --output=docs/training_curve.png
"""
import os

import numpy as np
from absl import app
from absl import flags

from superres import checkpoints
from superres import evaluation
from superres import files
from tools import plotting

FLAGS = flags.FLAGS
COLOURS = ('#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e')


def define_flags():
  flags.DEFINE_list('runs', [], 'LABEL=RUN_DIR pairs: train.py --checkpoint_dir folders run with --val_dir.')
  flags.DEFINE_string('val_dir', 'data/General100', 'The runs\' validation images, for the bicubic '
                      'line (the runs must have validated on them).')
  flags.DEFINE_list('minutes', ['5', '15', '60', '150'], 'Print the best PSNR reached within these minutes.')
  flags.DEFINE_list('steps', [], 'Also print the best PSNR reached within these training steps.')
  flags.DEFINE_string('output', 'result/training_curve.png', 'Image file to write: .png, or .svg or '
                      '.pdf for vectors.')


def read_run(spec):
  """(label, scale, [(minutes, val_psnr)], [(step, val_psnr)]) of one LABEL=RUN_DIR pair."""
  label, separator, run_dir = spec.partition('=')
  if not separator or not label or not run_dir:
    raise files.InputError(f'--runs: {spec!r} is not LABEL=RUN_DIR')
  config = checkpoints.read_config_file(run_dir)  # (only its scale: any PS order)
  if config is None:
    raise files.InputError(f'{run_dir}: not a train.py run folder (no {checkpoints.CONFIG_FILE})')
  records = checkpoints.read_json_lines(os.path.join(run_dir, checkpoints.VALIDATION_LOG))
  return (label, config['scale'], [(record['train_seconds'] / 60, record['val_psnr']) for record in records],
          [(record['step'], record['val_psnr']) for record in records])


def best_within(points, budget):
  """The best PSNR validated within `budget` (minutes or steps: points are (when, psnr)), or None if the run
  had not validated yet."""
  scores = [psnr for when, psnr in points if when <= budget]
  return max(scores) if scores else None


def draw(runs, bicubic_lines):
  """A line chart of PSNR (dB) against minutes: per run, each validation (thin) and the best so far (thick:
  what stopping then gives); a dashed grey line per bicubic scale. Returns the matplotlib figure."""
  figure = plotting.new_figure(8, 4.5)
  axes = figure.add_subplot()
  for scale, psnr in bicubic_lines.items():
    axes.axhline(psnr, color=plotting.BICUBIC_COLOUR, linestyle='--', linewidth=1.2, label=f'bicubic x{scale}')
  for (label, _, points, _), colour in zip(runs, COLOURS):
    minutes = [time for time, _ in points]
    psnr = [score for _, score in points]
    axes.plot(minutes, psnr, color=colour, linewidth=0.7, alpha=0.7, label=f'_{label}: each validation')
    axes.plot(minutes, np.maximum.accumulate(psnr), color=colour, linewidth=2.2, label=label)
  max_minutes = max([time for _, _, points, _ in runs for time, _ in points] + [1.0])  # (a run at minute 0)
  axes.set_xlim(0, max_minutes)
  axes.set_xlabel('minutes of training')
  axes.set_ylabel('validation PSNR, Y channel (dB)')
  plotting.style_axes(axes)
  axes.legend(loc='lower right', title='thick: best so far; thin: each validation', title_fontsize='small',
              fontsize='small', framealpha=0.95)
  figure.set_layout_engine('constrained')
  return figure


def numbers(flag):
  """The values of a list flag as floats; one error line if one is not a number."""
  try:
    return [float(value) for value in FLAGS[flag].value]
  except ValueError:
    raise files.InputError(f'--{flag}={",".join(FLAGS[flag].value)}: expected numbers, e.g. 5,15,60') from None


def print_row(label, cells, digits=2):
  print(f'| {label} | ' + ' | '.join('-' if cell is None else f'{cell:.{digits}f}' for cell in cells) + ' |')


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  if not FLAGS.runs:
    raise files.InputError('--runs: give at least one LABEL=RUN_DIR')
  plotting.check_output(FLAGS.output)
  minutes, steps = numbers('minutes'), numbers('steps')
  runs = [read_run(spec) for spec in FLAGS.runs]
  bicubic_lines = {scale: evaluation.bicubic_psnr(evaluation.validation_pairs(FLAGS.val_dir, scale), scale)
                   for scale in sorted({scale for _, scale, _, _ in runs})}
  plotting.save(draw(runs, bicubic_lines), FLAGS.output)
  print('| run | ' + ' | '.join(f'{value:g} min' for value in minutes) + ' |')
  print('|---|' + '---|' * len(minutes))
  for scale, psnr in bicubic_lines.items():
    print_row(f'bicubic x{scale}', [psnr] * len(minutes))
  for label, _, points, _ in runs:
    print_row(label, [best_within(points, value) for value in minutes])
  if steps:
    print('\n| run | ' + ' | '.join(f'{value:,.0f} steps' for value in steps) + ' |')
    print('|---|' + '---|' * len(steps))
    for label, _, _, step_points in runs:
      print_row(label, [best_within(step_points, value) for value in steps], digits=3)
  print(f'{FLAGS.output}: {len(runs)} runs')


if __name__ == '__main__':
  define_flags()
  app.run(main)
