"""Draws what TensorBoard shows of a train.py run, from the event files in its folder, as one image (for a page,
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
from matplotlib import ticker
from PIL import Image

from superres import files
from superres.runtime import tf
from tools import plotting

FLAGS = flags.FLAGS
PANELS = (('validation/bicubic', 'bicubic', -1), ('validation/espcn', 'ESPCN', 0), ('validation/espcn', 'ESPCN', -1),
          ('validation/hr', 'HR', -1))  # (tag, label, which validation: the first or the last)
FEW_POINTS = 50  # a line of at most this many points shows them as dots
MIN_WIDTH = 9  # inches: the three charts side by side
CHARTS_HEIGHT = 3  # inches
CROP_GAP = 0.2  # inches between the crops, and the room for their titles and for the margin below them
CROP_TITLE = 0.3
MARGIN = 0.1


def define_flags():
  flags.DEFINE_string('logdir', '', 'A train.py run folder (its --checkpoint_dir), holding its event files.')
  flags.DEFINE_string('output', 'result/tensorboard.png', 'Image file to write: .png, or .svg or .pdf '
                      'for vectors (the crops stay pixels).')
  flags.DEFINE_integer('zoom', 4, 'Enlargement of the validation crop (nearest neighbour): pixels of the '
                       f'PNG per crop pixel, at {plotting.DPI} dpi.', lower_bound=1)


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


def draw_chart(axes, title, lines, max_step, log_scale=False):
  """A line chart of (step, value) lines, [(points, colour, label, dashed)], on a log scale if asked; dots
  mark the points of a line with few of them (the validations)."""
  for points, colour, label, dashed in lines:
    steps = [step for step, _ in points]
    values = [value for _, value in points]
    axes.plot(steps, values, color=colour, label=label, linestyle='--' if dashed else '-',
              linewidth=1.2 if dashed else 1.5, marker=None if dashed or len(points) > FEW_POINTS else 'o',
              markersize=3)
  if log_scale:
    axes.set_yscale('log')
    all_values = [value for points, _, _, _ in lines for _, value in points]
    if min(all_values) == max(all_values):  # a constant (the rate before any decay): half a decade either side
      axes.set_ylim(all_values[0] / np.sqrt(10), all_values[0] * np.sqrt(10))
  axes.set_xlim(0, max_step)
  axes.xaxis.set_major_locator(ticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
  axes.xaxis.set_major_formatter(ticker.EngFormatter(sep=''))  # 20k rather than 20000 or 2e4
  axes.set_xlabel('step')
  axes.set_title(title, fontsize='medium', loc='left')
  plotting.style_axes(axes)
  if len(lines) > 1:
    axes.legend(loc='lower right', fontsize='small', framealpha=0.95)


def charts_of(scalars):
  """(title, lines, log_scale) of each chart that the run has the scalars for, in the order they are drawn."""
  charts = []
  if 'loss' in scalars:
    charts.append(('training loss (MSE)', [(scalars['loss'], '#1f77b4', 'loss', False)], True))
  if 'learning_rate' in scalars:
    charts.append(('learning rate', [(scalars['learning_rate'], '#ff7f0e', 'learning rate', False)], True))
  if 'validation/psnr' in scalars:
    lines = [(scalars['validation/psnr'], '#d62728', 'ESPCN', False)]
    if 'validation/bicubic_psnr' in scalars:
      lines.append((scalars['validation/bicubic_psnr'], plotting.BICUBIC_COLOUR, 'bicubic', True))
    charts.append(('validation PSNR, Y channel (dB)', lines, False))
  return charts


def crops_of(images):
  """[(label, step, image)] as PANELS lists them; after a single validation, its ESPCN crop once."""
  crops = []
  for tag, label, index in PANELS:
    if tag in images and all(images[tag][index][1] is not image for _, _, image in crops):
      step, image = images[tag][index]
      crops.append((label, step, image))
  return crops


def draw_figure(scalars, images, zoom):
  """The charts in a row, and below them the validation crops, each crop pixel `zoom` x `zoom` pixels of
  the PNG (matplotlib places them on whole pixels, so nothing blurs them). Returns the matplotlib figure."""
  max_step = max(step for points in scalars.values() for step, _ in points) or 1
  crops = crops_of(images)
  crop_size = np.array([max([image.size[axis] * zoom for _, _, image in crops], default=0) for axis in (0, 1)])
  gap, title_height, margin = (round(inches * plotting.DPI) for inches in (CROP_GAP, CROP_TITLE, MARGIN))
  crops_width = len(crops) * (crop_size[0] + gap) - gap
  width = max(round(MIN_WIDTH * plotting.DPI), crops_width + 2 * margin)
  crops_height = crop_size[1] + title_height + margin if crops else 0
  charts_height = round(CHARTS_HEIGHT * plotting.DPI)
  height = charts_height + crops_height
  figure = plotting.new_figure(width / plotting.DPI, height / plotting.DPI)
  charts_figure = figure.subfigures(2, 1, height_ratios=[charts_height, max(crops_height, 1)])[0]
  charts = charts_of(scalars)
  for axes, (title, lines, log_scale) in zip(charts_figure.subplots(1, len(charts), squeeze=False)[0], charts):
    draw_chart(axes, title, lines, max_step, log_scale)
  left = (width - crops_width) // 2
  for label, step, image in crops:
    size = np.array(image.size) * zoom
    axes = figure.add_axes([left / width, margin / height, size[0] / width, size[1] / height])
    axes.imshow(np.asarray(image.convert('RGB')), interpolation='nearest')
    axes.set_axis_off()
    axes.set_title(f'{label}, step {step:,}', fontsize='medium')
    left += crop_size[0] + gap
  figure.set_layout_engine('constrained')
  return figure


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  if not FLAGS.logdir:
    raise files.InputError('--logdir: give a train.py run folder (its --checkpoint_dir)')
  plotting.check_output(FLAGS.output)
  scalars, images = read_events(FLAGS.logdir)
  plotting.save(draw_figure(scalars, images, FLAGS.zoom), FLAGS.output)
  counts = ', '.join(f'{tag} {len(points)}' for tag, points in sorted(scalars.items()))
  image_steps = sorted({step for pictures in images.values() for step, _ in pictures})
  print(f'{FLAGS.output}: {counts}; images of {len(image_steps)} validations')


if __name__ == '__main__':
  define_flags()
  app.run(main)
