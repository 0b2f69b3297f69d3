"""Draws what TensorBoard shows of a train.py run, from the event files in its folder, as one PNG (for a page,
or a machine without a browser): the training loss, the learning rate and the validation PSNR against the
step (bicubic's PSNR dashed), and the validation crop as bicubic, ESPCN at the first and the last
validation (the network sharpening), and HR.

  python -m tools.plot_events --logdir=checkpoint/train_y_x3 --output=docs/tensorboard.png

It reads the events as TensorBoard does: every events.out.tfevents.* file of the folder in the order of
their names (one per start of the run), a step written twice counting once, with its later value.
"""
import glob
import io
import os

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from PIL import ImageDraw

from superres import files
from superres import image_files
from superres.runtime import tf

FLAGS = flags.FLAGS
CHART_SIZE = (300, 210)  # each chart, axes and labels included
CHART_MARGIN = (58, 24, 12, 34)  # left, top, right, bottom: room for the tick labels and the title
PANELS = (('validation/bicubic', 'bicubic', -1), ('validation/espcn', 'ESPCN', 0), ('validation/espcn', 'ESPCN', -1),
          ('validation/hr', 'HR', -1))  # (tag, label, which validation: the first or the last)
GAP = 10
LABEL_HEIGHT = 16


def define_flags():
  flags.DEFINE_string('logdir', '', 'A train.py run folder (its --checkpoint_dir), holding its event files.')
  flags.DEFINE_string('output', 'docs/tensorboard.png', 'PNG file to write.')
  flags.DEFINE_integer('zoom', 2, 'Enlargement of the validation crop (nearest neighbour).', lower_bound=1)


def read_events(logdir):
  """({scalar tag: [(step, value)]}, {image tag: [(step, PIL image)]}) of a run folder.

  A file whose last record a kill cut short is read up to that record.
  """
  scalars, images = {}, {}
  for path in sorted(glob.glob(os.path.join(glob.escape(logdir), 'events.out.tfevents.*'))):
    try:
      for event in tf.train.summary_iterator(path):
        for value in event.summary.value:
          if value.HasField('image'):
            images.setdefault(value.tag, {})[event.step] = value.image.encoded_image_string
          else:
            scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    except tf.errors.DataLossError:
      pass  # a record cut short by a kill: the rest of that file was never written
  if not scalars:
    raise files.InputError(f'{logdir}: no TensorBoard events here (train.py writes them into its '
                           f'--checkpoint_dir)')
  return ({tag: sorted(points.items()) for tag, points in scalars.items()},
          {tag: [(step, Image.open(io.BytesIO(encoded))) for step, encoded in sorted(steps.items())]
           for tag, steps in images.items()})


def draw_chart(title, lines, max_step, log_scale=False):
  """A line chart of (step, value) lines, [(points, colour, dashed)], on a log scale if asked."""
  image = Image.new('RGB', CHART_SIZE, 'white')
  draw = ImageDraw.Draw(image)
  left, top = CHART_MARGIN[0], CHART_MARGIN[1]
  right, bottom = CHART_SIZE[0] - CHART_MARGIN[2], CHART_SIZE[1] - CHART_MARGIN[3]
  transform = np.log10 if log_scale else np.asarray
  values = transform(np.array([value for points, _, _ in lines for _, value in points], np.float64))
  low, high = values.min(), values.max()
  if high - low < 1e-9:  # a constant (the learning rate before any decay): a band around it
    padding = 0.5 if log_scale else max(abs(low) * 0.1, 1e-3)
    low, high = low - padding, high + padding

  def position(step, value):
    return (left + (right - left) * step / max_step,
            bottom - (bottom - top) * (transform(value) - low) / (high - low))

  for fraction in np.linspace(0, 1, 5):  # horizontal grid and its labels
    level = low + fraction * (high - low)
    y = bottom - (bottom - top) * fraction
    draw.line([(left, y), (right, y)], fill='#e4e4e4')
    label = f'{10 ** level:.2g}' if log_scale else f'{level:.2f}'
    draw.text((4, y - 6), label, fill='black')
  for fraction in np.linspace(0, 1, 3):
    label = f'{fraction * max_step:.0f}'
    x = left + (right - left) * fraction - draw.textlength(label) * fraction  # the last one ends at the axis
    draw.text((x, bottom + 4), label, fill='black')
  draw.rectangle([left, top, right, bottom], outline='black')
  draw.text((left, 4), title, fill='black')
  draw.text(((left + right) // 2 - 10, bottom + 18), 'step', fill='black')
  for points, colour, dashed in lines:
    xy = [position(step, value) for step, value in points]
    if dashed:
      for start, end in zip(xy, xy[1:]):
        draw.line([start, ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)], fill=colour, width=2)
    elif len(xy) == 1:
      draw.ellipse([xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2], fill=colour)
    else:
      draw.line(xy, fill=colour, width=2)
  return image


def draw_figure(scalars, images, zoom):
  """The charts in a row, and below them the validation crop as PANELS lists them, labelled."""
  max_step = max(step for points in scalars.values() for step, _ in points) or 1
  charts = []
  if 'loss' in scalars:
    charts.append(draw_chart('training loss (MSE, log scale)', [(scalars['loss'], '#1f77b4', False)],
                             max_step, log_scale=True))
  if 'learning_rate' in scalars:
    charts.append(draw_chart('learning rate (log scale)', [(scalars['learning_rate'], '#ff7f0e', False)],
                             max_step, log_scale=True))
  if 'validation/psnr' in scalars:
    lines = [(scalars['validation/psnr'], '#d62728', False)]
    if 'validation/bicubic_psnr' in scalars:
      lines.append((scalars['validation/bicubic_psnr'], '#777777', True))
    charts.append(draw_chart('validation PSNR, dB (dashed: bicubic)', lines, max_step))
  crops = []  # (label, (step, image)); after a single validation, its ESPCN crop once
  for tag, label, index in PANELS:
    if tag in images and all(images[tag][index] is not crop for _, crop in crops):
      crops.append((label, images[tag][index]))
  crop_width = max([image.width * zoom for _, (_, image) in crops], default=0)
  crop_height = max([image.height * zoom for _, (_, image) in crops], default=0)
  width = max(len(charts) * (CHART_SIZE[0] + GAP), len(crops) * (crop_width + GAP)) + GAP
  height = CHART_SIZE[1] + 2 * GAP + (crop_height + LABEL_HEIGHT + GAP if crops else 0)
  figure = Image.new('RGB', (width, height), 'white')
  for index, chart in enumerate(charts):
    figure.paste(chart, (GAP + index * (CHART_SIZE[0] + GAP), GAP))
  draw = ImageDraw.Draw(figure)
  top = CHART_SIZE[1] + 2 * GAP
  for index, (label, (step, image)) in enumerate(crops):
    left = GAP + index * (crop_width + GAP)
    draw.text((left, top), f'{label}, step {step}', fill='black')
    enlarged = image.convert('RGB').resize((image.width * zoom, image.height * zoom), Image.NEAREST)
    figure.paste(enlarged, (left, top + LABEL_HEIGHT))
  return figure


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  if not FLAGS.logdir:
    raise files.InputError('--logdir: give a train.py run folder (its --checkpoint_dir)')
  files.ensure_writable_parent(FLAGS.output)
  scalars, images = read_events(FLAGS.logdir)
  image_files.save_png(draw_figure(scalars, images, FLAGS.zoom), FLAGS.output)
  counts = ', '.join(f'{tag} {len(points)}' for tag, points in sorted(scalars.items()))
  image_steps = sorted({step for pictures in images.values() for step, _ in pictures})
  print(f'{FLAGS.output}: {counts}; images of {len(image_steps)} validations')


if __name__ == '__main__':
  define_flags()
  app.run(main)
