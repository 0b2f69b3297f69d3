"""ESPCN, the Efficient Sub-Pixel Convolutional Network (Shi et al., CVPR 2016), as TF1 graph code.

All three convolutions work on the LOW-resolution image; only the last step, the periodic shuffle (PS),
produces the high-resolution image, by rearranging r*r*C feature maps into an r-times larger image:

  lr_images   [N, H, W, C]
  layer1      5x5 conv, C -> 64, tanh          [N, H, W, 64]
  layer2      3x3 conv, 64 -> 32, tanh         [N, H, W, 32]
  layer3      3x3 conv, 32 -> r*r*C            [N, H, W, r*r*C]
  PS          periodic shuffle                 [N, r*H, r*W, C]
  output      tanh (the blog) or none (the paper)

N, H and W are known only when the graph runs, so one graph serves training batches of patches and whole
images of any size. Pixel values are in [0, 1].
"""
import os

import numpy as np
from PIL import Image

import utils


def _import_tensorflow_quietly():
  """Imports TF1-style TensorFlow with its C++ start-up notes hidden.

  TensorFlow's runtime prints notes on stderr when it loads (no CUDA driver, CPU features) whatever
  TF_CPP_MIN_LOG_LEVEL says, which would bury this repo's one-line error messages. Set
  TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's own log again after the import.
  """
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  # oneDNN kernels: faster convolutions on AVX2-only CPUs, where TensorFlow leaves them off by default.
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
  saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    import tensorflow.compat.v1 as tf_v1  # pylint: disable=import-outside-toplevel
  finally:
    os.dup2(saved_stderr, 2)
    os.close(saved_stderr)
    os.close(devnull)
  tf_v1.disable_eager_execution()
  tf_v1.get_logger().setLevel('ERROR')  # no "Restoring parameters from ..." notes on stderr
  return tf_v1


tf = _import_tensorflow_quietly()

OUTPUT_ACTIVATIONS = ('tanh', 'none')
PRECISIONS = {'float32': tf.float32, 'bfloat16': tf.bfloat16}  # generate.py --precision: see espcn()


def conv_layer(inputs, scope, kernel_size, in_channels, out_channels):
  """A 'SAME' convolution with weights ~ truncated normal, stddev sqrt(2 / (k*k*c_in)), and zero bias.

  The weights are float32 variables; they are used in the dtype of `inputs` (see espcn's layer2_dtype).
  """
  with tf.variable_scope(scope):
    stddev = np.sqrt(2.0 / (kernel_size * kernel_size * in_channels))
    weights = tf.get_variable('weights', [kernel_size, kernel_size, in_channels, out_channels],
                              initializer=tf.truncated_normal_initializer(stddev=stddev))
    bias = tf.get_variable('bias', [out_channels], initializer=tf.zeros_initializer())
    weights, bias = tf.cast(weights, inputs.dtype), tf.cast(bias, inputs.dtype)  # no-ops for float32
    return tf.nn.conv2d(inputs, weights, strides=[1, 1, 1, 1], padding='SAME') + bias


def phase_shift(features, scale, channels):
  """The periodic shuffle PS: [N, H, W, r*r*C] -> [N, r*H, r*W, C], in the blog's channel order.

  As the blog's PS splits them, the channels come in C blocks of r*r, one block per colour. Within the
  block of colour c, channel q*r + p becomes the HR pixel at row offset p and column offset q of its r x r
  cell:  output[n, r*h + p, r*w + q, c] = features[n, h, w, c*r*r + q*r + p].
  This is tf.nn.depth_to_space with the channels permuted (see README); written as reshape + transpose,
  it needs no batch size, no squeeze and no per-size copy.
  """
  shape = tf.shape(features)
  batch, height, width = shape[0], shape[1], shape[2]
  cells = tf.reshape(features, [batch, height, width, channels, scale, scale])  # [N, H, W, C, q, p]
  cells = tf.transpose(cells, [0, 1, 5, 2, 4, 3])  # [N, H, p, W, q, C]
  return tf.reshape(cells, [batch, height * scale, width * scale, channels])  # [N, rH, rW, C]


def espcn(lr_images, scale, channels, output_activation='tanh', layer2_dtype=tf.float32):
  """Builds the network on `lr_images` [N, H, W, C] and returns the super-resolved [N, rH, rW, C].

  layer2_dtype=tf.bfloat16 is an inference option (generate.py --precision): layer 2, most of the work
  (81% in y mode, 59% in rgb), runs in bfloat16, for CPUs with native bfloat16 (AVX512-BF16, AMX); others
  emulate it, slower than float32 (README). Layers 1 and 3 stay float32: bfloat16's 8-bit mantissa cannot
  hold the 256 gray levels of the input, and would round the output, the image, by up to half a gray level.
  """
  hidden = tf.tanh(conv_layer(lr_images, 'layer1-conv1', 5, channels, 64))  # [N, H, W, 64]
  hidden = tf.tanh(conv_layer(tf.cast(hidden, layer2_dtype), 'layer2-conv2', 3, 64, 32))  # [N, H, W, 32]
  hidden = tf.cast(hidden, tf.float32)
  subpixels = conv_layer(hidden, 'layer3-conv3', 3, 32, scale * scale * channels)  # [N, H, W, r*r*C]
  sr_images = phase_shift(subpixels, scale, channels)  # [N, rH, rW, C]
  return tf.tanh(sr_images) if output_activation == 'tanh' else sr_images


RECEPTIVE_RADIUS = 4  # LR pixels that reach one output pixel from each side: 2 (5x5) + 1 (3x3) + 1 (3x3)
TILE_MARGIN = 2 * RECEPTIVE_RADIUS  # LR context around a tile: tiles overlap by 16 >= the 9x9 receptive field
DEFAULT_TILE = 512  # LR pixels per tile side: about 250 MiB of activations for rgb, any image size


def tiles(height, width, tile):
  """(top, left, bottom, right) of the tiles that cover an image, each at most tile x tile.

  Memory grows with a tile's area, so an image of at most tile * tile pixels goes in one pass whatever
  its shape (a 640x360 frame with the default 512: one pass, no margins computed twice).
  """
  if height * width <= tile * tile:
    return [(0, 0, height, width)]
  return [(top, left, min(top + tile, height), min(left + tile, width))
          for top in range(0, height, tile) for left in range(0, width, tile)]


class Upscaler:
  """Runs an ESPCN graph on whole images and handles their colour: the reconstruction step.

  In 'y' mode the network sees only luminance; the chroma comes from bicubic upscaling and is merged back.
  In 'rgb' mode the network sees all three channels. A grayscale image stays grayscale in both modes.

  Images larger than one tile are processed tile by tile, each with TILE_MARGIN pixels of context, from
  the network through the colour merge to uint8: memory is bounded by the tile, and since every output
  pixel sees only RECEPTIVE_RADIUS pixels around it, the result is that of one pass over the whole image
  (up to float32 rounding: the convolution kernels may sum in another order for another shape).
  """

  def __init__(self, session, lr_images, sr_images, scale, channels, tile=DEFAULT_TILE, precision='float32'):
    self.session = session
    self.lr_images = lr_images  # placeholder [N, H, W, C]
    self.sr_images = sr_images  # [N, rH, rW, C]
    self.scale = scale
    self.channels = channels
    self.tile = tile
    self.precision = precision
    self.checkpoint = None

  @classmethod
  def from_checkpoint(cls, checkpoint_dir, scale, channels, tile=DEFAULT_TILE, precision='float32'):
    """Builds the inference graph that `checkpoint_dir` was trained with and restores its latest weights."""
    config = utils.read_model_config(checkpoint_dir)
    checkpoint = tf.train.latest_checkpoint(checkpoint_dir) if os.path.isdir(checkpoint_dir) else None
    if config is None or checkpoint is None:
      raise utils.InputError(
          f'{checkpoint_dir}: no trained checkpoint here; train one with '
          f'`python train.py --images_dir=../shared/data/T91 --scale={scale} --channels={channels}` '
          f'and pass --checkpoint_dir=checkpoint/train_{channels}_x{scale}')
    utils.check_model_config(config, checkpoint_dir, scale, channels)
    upscaler = cls.build(scale, channels, config['output_activation'], tile, precision)
    with upscaler.session.graph.as_default():
      try:
        tf.train.Saver().restore(upscaler.session, checkpoint)
      except (tf.errors.OpError, ValueError) as error:
        raise utils.InputError(f'{checkpoint}: cannot restore checkpoint ({error})') from None
    upscaler.checkpoint = checkpoint
    return upscaler

  @classmethod
  def with_random_weights(cls, scale, channels, tile=DEFAULT_TILE, precision='float32', seed=0):
    """An untrained network (the initialisation of train.py): for speed measurements only."""
    upscaler = cls.build(scale, channels, 'none', tile, precision, seed)
    with upscaler.session.graph.as_default():
      upscaler.session.run(tf.global_variables_initializer())
    upscaler.checkpoint = 'random weights'
    return upscaler

  @classmethod
  def build(cls, scale, channels, output_activation, tile, precision='float32', seed=None):
    """The inference graph in a session of its own, weights not yet set."""
    graph = tf.Graph()
    with graph.as_default():
      tf.set_random_seed(seed)
      num_channels = utils.CHANNEL_MODES[channels]
      lr_images = tf.placeholder(tf.float32, [None, None, None, num_channels], name='lr_images')
      sr_images = espcn(lr_images, scale, num_channels, output_activation, PRECISIONS[precision])
    return cls(tf.Session(graph=graph), lr_images, sr_images, scale, channels, tile, precision)

  def network(self, lr_array, bands=None):
    """float32 [H, W, C] in [0, 1] -> float32 [rH, rW, C]: the network on one image.

    The image goes in as a batch of `bands` horizontal bands (default: one per core, if the image is tall
    enough), each with TILE_MARGIN rows of context: TensorFlow's CPU convolutions spread a batch over the
    cores much better than a single image (README, "Speed and memory"), and thanks to the margins the
    result is that of one pass.
    """
    height, r = lr_array.shape[0], self.scale
    if bands is None:
      bands = max(1, min(utils.WORKERS, height // (4 * TILE_MARGIN)))  # (bands much taller than the margins)
    rows = -(-height // bands)  # rows that each band delivers; the last one may deliver fewer
    window = min(height, rows + 2 * TILE_MARGIN)  # rows that each band sees: all bands of one size
    tops = [band * rows for band in range(bands)]
    window_tops = [min(max(top - TILE_MARGIN, 0), height - window) for top in tops]
    batch = np.stack([lr_array[window_top:window_top + window] for window_top in window_tops])  # [B, w, W, C]
    sr_batch = self.session.run(self.sr_images, {self.lr_images: batch})  # [B, r*w, rW, C]
    return np.concatenate([sr[(top - window_top) * r:(min(top + rows, height) - window_top) * r]
                           for sr, top, window_top in zip(sr_batch, tops, window_tops)])

  def upscale(self, image):
    """uint8 [H, W, 3] RGB or [H, W] grayscale -> uint8 image of r*H x r*W in the same layout."""
    r = self.scale
    height, width = image.shape[:2]
    output = np.empty((height * r, width * r) + image.shape[2:], np.uint8)
    pending_bicubic = None
    if self.channels == 'y' and image.ndim == 3:  # its chroma is merged with the network's luminance;
      pending_bicubic = utils.THREADS.submit(  # Pillow releases the GIL: made while the network runs
          lambda: np.asarray(utils.bicubic_resize(Image.fromarray(image), (width * r, height * r))))
    for top, left, bottom, right in tiles(height, width, self.tile):
      window_top, window_left = max(top - TILE_MARGIN, 0), max(left - TILE_MARGIN, 0)
      window = image[window_top:min(bottom + TILE_MARGIN, height),
                     window_left:min(right + TILE_MARGIN, width)]
      sr_window = self.network(self.network_input(window))  # [rh, rw, C] of the window
      sr_tile = sr_window[(top - window_top) * r:(bottom - window_top) * r,
                          (left - window_left) * r:(right - window_left) * r]
      hr_box = (slice(top * r, bottom * r), slice(left * r, right * r))
      bicubic_tile = None if pending_bicubic is None else pending_bicubic.result()[hr_box]
      self._fill(output[hr_box], sr_tile, image.ndim == 2, bicubic_tile)
    return output

  def _fill(self, output_tile, sr_tile, gray, bicubic_tile):
    """Writes _to_pixels of a tile into `output_tile`, its rows split between the cores.

    The merge is a few passes of NumPy over every output value, about a fifth of the network's time for a
    1080p frame on one core; NumPy releases the GIL, so threads halve it on two cores.
    """
    def fill_rows(rows):
      bicubic_rows = None if bicubic_tile is None else bicubic_tile[rows]
      output_tile[rows] = self._to_pixels(sr_tile[rows], gray, bicubic_rows)
    utils.in_row_blocks(fill_rows, output_tile.shape[0])

  def network_input(self, window):
    """What the network sees of a uint8 window, as float32 [h, w, C] in [0, 1].

    A gray level is luminance: the 'y' network takes it as it is, the 'rgb' one sees R = G = B.
    """
    if self.channels == 'y':
      luma = window if window.ndim == 2 else utils.luminance(window)
      return luma.astype(np.float32)[..., None] / 255.0
    rgb = window if window.ndim == 3 else np.repeat(window[..., None], 3, axis=2)
    return rgb.astype(np.float32) / 255.0

  @staticmethod
  def _to_pixels(sr, gray, bicubic):
    """The network's float32 [rh, rw, C] output as uint8 pixels: [rh, rw] if `gray`, else [rh, rw, 3].

    `bicubic` (uint8 RGB of the same region) is given for colour input in 'y' mode: its chroma is merged
    with the network's Y.
    """
    if gray:
      return utils.to_uint8(255.0 * sr.mean(axis=2))  # 'y': the one channel; 'rgb': the mean of R, G, B
    if bicubic is None:
      return utils.to_uint8(255.0 * sr)
    return utils.to_uint8(utils.replace_luminance(bicubic, 255.0 * sr[..., 0]))
