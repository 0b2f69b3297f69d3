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
from PIL import Image
from PIL import ImageDraw

from superres import checkpoints
from superres import evaluation
from superres import files
from superres import image_files

FLAGS = flags.FLAGS
COLOURS = ('#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e')
SIZE = (900, 520)
MARGIN = (70, 20, 20, 50)  # left, top, right, bottom


def define_flags():
  flags.DEFINE_list('runs', [], 'LABEL=RUN_DIR pairs: train.py --checkpoint_dir folders run with --val_dir.')
  flags.DEFINE_string('val_dir', '../shared/data/General100', 'The runs\' validation images, for the bicubic '
                      'line (the runs must have validated on them).')
  flags.DEFINE_list('minutes', ['5', '15', '60', '150'], 'Print the best PSNR reached within these minutes.')
  flags.DEFINE_list('steps', [], 'Also print the best PSNR reached within these training steps.')
  flags.DEFINE_string('output', 'docs/training_curve.png', 'PNG file to write.')


def read_run(spec):
  """(label, scale, [(minutes, val_psnr)], [(step, val_psnr)]) of one LABEL=RUN_DIR pair."""
  label, separator, run_dir = spec.partition('=')
  if not separator or not label or not run_dir:
    raise files.InputError(f'--runs: {spec!r} is not LABEL=RUN_DIR')
  config = checkpoints.read_config(run_dir)
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
  """A line chart of PSNR (dB) against minutes: per run, each validation (thin) and the best so far (thick);
  a dashed grey line per bicubic scale."""
  image = Image.new('RGB', SIZE, 'white')
  draw_context = ImageDraw.Draw(image)
  left, top, right, bottom = MARGIN[0], MARGIN[1], SIZE[0] - MARGIN[2], SIZE[1] - MARGIN[3]
  all_psnr = [psnr for _, _, points, _ in runs for _, psnr in points] + list(bicubic_lines.values())
  max_minutes = max([time for _, _, points, _ in runs for time, _ in points] + [1.0])  # (a run at minute 0)
  low, high = np.floor(min(all_psnr) * 2) / 2, np.ceil(max(all_psnr) * 2) / 2

  def position(minutes, psnr):
    return (left + (right - left) * minutes / max_minutes, bottom - (bottom - top) * (psnr - low) / (high - low))

  for psnr in np.arange(low, high + 0.01, 0.5):  # horizontal grid, labelled in dB
    y = position(0, psnr)[1]
    draw_context.line([(left, y), (right, y)], fill='#dddddd')
    draw_context.text((left - 45, y - 6), f'{psnr:.1f}', fill='black')
  for minutes in np.arange(0, max_minutes + 1, 10 if max_minutes < 100 else 30):
    x = position(minutes, low)[0]
    draw_context.line([(x, top), (x, bottom)], fill='#eeeeee')
    draw_context.text((x - 8, bottom + 6), f'{minutes:.0f}', fill='black')
  draw_context.rectangle([left, top, right, bottom], outline='black')
  draw_context.text(((left + right) // 2 - 90, bottom + 26), 'minutes of training', fill='black')
  draw_context.text((4, top), 'dB', fill='black')
  legend = []
  for scale, psnr in bicubic_lines.items():
    y = position(0, psnr)[1]
    for x in range(left, right, 12):  # dashed
      draw_context.line([(x, y), (min(x + 6, right), y)], fill='#777777', width=2)
    legend.append((f'bicubic x{scale}', '#777777'))
  for (label, _, points, _), colour in zip(runs, COLOURS):
    best_so_far = np.maximum.accumulate([psnr for _, psnr in points])
    draw_context.line([position(*point) for point in points], fill=colour, width=1)  # each validation
    draw_context.line([position(time, best) for (time, _), best in zip(points, best_so_far)], fill=colour,
                      width=3)  # the best weights so far: what stopping then gives
    legend.append((f'{label} (thick: best so far)', colour))
  for index, (label, colour) in enumerate(legend):
    y = bottom - 20 - 16 * (len(legend) - 1 - index)
    draw_context.line([(right - 300, y + 6), (right - 275, y + 6)], fill=colour, width=3)
    draw_context.text((right - 268, y), label, fill='black')
  return image


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
  files.ensure_writable_parent(FLAGS.output)
  minutes, steps = numbers('minutes'), numbers('steps')
  runs = [read_run(spec) for spec in FLAGS.runs]
  bicubic_lines = {scale: evaluation.bicubic_psnr(evaluation.validation_pairs(FLAGS.val_dir, scale), scale)
                   for scale in sorted({scale for _, scale, _, _ in runs})}
  image_files.save_png(draw(runs, bicubic_lines), FLAGS.output)
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
