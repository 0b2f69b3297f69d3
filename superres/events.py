"""TensorBoard's view of a training run: event files in its folder (`tensorboard --logdir=checkpoint`).

train.py adds the loss and learning rate every --summary_every steps and the scores and images of each
validation; `python -m tools.plot_events` draws a run's events as a PNG.
"""
import io
import os

import numpy as np

from superres import colour
from superres import evaluation
from superres import image_files
from superres.runtime import tf

SUMMARY_CROP = 96  # HR pixels a side of the validation crop shown in TensorBoard (a multiple of 2, 3 and 4)


class Summaries:
  """TensorBoard's view of the run: event files in the run folder (`tensorboard --logdir=checkpoint`).

  Every --summary_every steps: 'loss', the mean training loss of the steps since the last one, and
  'learning_rate'. At each validation: 'validation/psnr' and 'validation/bicubic_psnr' (bicubic's on the
  same images, a reference line), and one crop of the first validation image, where bicubic misses most,
  as 'validation/bicubic', 'validation/espcn' and 'validation/hr' images, to watch the network sharpen.

  Events wait in memory until the checkpoint of their step is saved (write_pending): the event files never
  run ahead of the checkpoints, so a run that resumes from its latest checkpoint (after an interrupt, a kill
  or a non-finite loss) appends later steps only, never a step again. Each start writes a file of its own,
  named after its first step as well as the second (TensorFlow's name alone would let a run resumed within
  the same second overwrite the last one's file); TensorBoard reads them all, in the order of their names.
  """

  def __init__(self, run_dir, first_step, val_pairs, scale):
    self.run_dir, self.first_step = run_dir, first_step
    self.writer = None  # opened with the first events to write: a run with nothing to train writes no file
    self.pending = []  # (step, tf.Summary)
    self.loss_sum, self.loss_steps = 0.0, 0
    if val_pairs:
      lr, hr = val_pairs[0]
      bicubic = evaluation.bicubic_upscale(lr, hr.shape)
      self.crop = detail_crop(hr, bicubic, scale)
      self.reference_images = {'validation/bicubic': bicubic[self.crop], 'validation/hr': hr[self.crop]}
      self.bicubic_psnr = evaluation.bicubic_psnr(val_pairs, scale)

  def add_loss(self, batch_loss):
    self.loss_sum += float(batch_loss)
    self.loss_steps += 1

  def add_training(self, step, rate):
    """'loss' (the mean since the last summary) and 'learning_rate' at `step`."""
    self.pending.append((step, tf.Summary(value=[
        tf.Summary.Value(tag='loss', simple_value=self.loss_sum / self.loss_steps),
        tf.Summary.Value(tag='learning_rate', simple_value=rate)])))
    self.loss_sum, self.loss_steps = 0.0, 0

  def add_validation(self, step, val_psnr, espcn_image):
    """The scores and the crop's images of a validation; `espcn_image` is the first image upscaled."""
    images = dict(self.reference_images, **{'validation/espcn': espcn_image[self.crop]})
    self.pending.append((step, tf.Summary(value=[
        tf.Summary.Value(tag='validation/psnr', simple_value=val_psnr),
        tf.Summary.Value(tag='validation/bicubic_psnr', simple_value=self.bicubic_psnr),
        *(image_summary(tag, images[tag]) for tag in ('validation/bicubic', 'validation/espcn',
                                                      'validation/hr'))])))

  def write_pending(self):
    """Writes the events waiting for a checkpoint; call after each save."""
    if not self.pending:
      return
    if self.writer is None:
      self.writer = tf.summary.FileWriter(self.run_dir,
                                          filename_suffix=f'.{self.first_step:010d}.{os.getpid()}')
    for step, summary in self.pending:
      self.writer.add_summary(summary, step)
    self.writer.flush()
    self.pending = []

  def close(self):
    """Closes the event file; events of steps after the last save are dropped, as the steps are."""
    if self.writer is not None:
      self.writer.close()


def detail_crop(hr, bicubic, scale, size=SUMMARY_CROP):
  """The (rows, columns) slices of the size x size HR window (smaller for a smaller image), on the grid of
  r pixels, where bicubic's Y error is largest: where the network has the most detail to restore."""
  height, width = hr.shape[:2]
  crop_height, crop_width = (min(size, side - side % scale) for side in (height, width))
  error = (colour.luminance(hr) - colour.luminance(bicubic)) ** 2
  integral = np.pad(error.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral[i, j]: the sum of error[:i, :j]
  tops = np.arange(0, height - crop_height + 1, scale)[:, None]
  lefts = np.arange(0, width - crop_width + 1, scale)[None, :]
  window_sums = (integral[tops + crop_height, lefts + crop_width] - integral[tops, lefts + crop_width]
                 - integral[tops + crop_height, lefts] + integral[tops, lefts])
  row, column = np.unravel_index(np.argmax(window_sums), window_sums.shape)
  top, left = tops[row, 0], lefts[0, column]
  return slice(top, top + crop_height), slice(left, left + crop_width)


def image_summary(tag, pixels):
  """A TensorBoard image of uint8 [H, W] (gray) or [H, W, 3] pixels, PNG-encoded."""
  stream = io.BytesIO()
  image_files.write_png(pixels, stream)
  return tf.Summary.Value(tag=tag, image=tf.Summary.Image(
      height=pixels.shape[0], width=pixels.shape[1], colorspace=1 if pixels.ndim == 2 else pixels.shape[2],
      encoded_image_string=stream.getvalue()))
