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

After the network: the reconstruction step, as a graph from 8-bit RGB to 8-bit RGB around it (bicubic
chroma as a sub-pixel convolution with fixed weights, the colour merge), and Upscaler, which runs it on
images of any size.
"""
import functools
import os
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

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


def multiply_adds_per_pixel(scale, channels):
  """Multiply-adds of the three convolutions above for one LR pixel (the benchmark's FLOP count)."""
  return 5 * 5 * channels * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * scale * scale * channels


def session_config(threads):
  """Session options: `threads` CPU threads per operation and operations at once (0: all cores)."""
  return tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)


RECEPTIVE_RADIUS = 4  # LR pixels that reach one output pixel from each side: 2 (5x5) + 1 (3x3) + 1 (3x3)
TILE_MARGIN = 2 * RECEPTIVE_RADIUS  # LR context around a tile: tiles overlap by 16 >= the 9x9 receptive field
DEFAULT_TILE = 512  # LR pixels per tile side: about 250 MiB of activations for rgb, any image size
BICUBIC_RADIUS = 2  # LR pixels on each side that bicubic interpolation weighs (a 5x5 window covers all r)


def keys_cubic(distance, a=-0.5):
  """Keys' cubic convolution kernel; a = -0.5 is the bicubic of MATLAB's imresize and of Pillow."""
  distance = np.abs(distance)
  near = ((a + 2) * distance - (a + 3)) * distance ** 2 + 1  # |d| <= 1
  far = ((distance - 5) * distance + 8) * distance * a - 4 * a  # 1 < |d| < 2
  return np.where(distance <= 1, near, np.where(distance < 2, far, 0.0))


def bicubic_weights(scale):
  """[r, 5] float32: the weights of LR pixels -2..2 for HR offset p = 0..r-1 within an LR pixel's cell.

  HR pixel r*i + p has its centre at LR coordinate i + (p + 0.5) / r - 0.5 (pixel centres at integers).
  """
  offsets = (np.arange(scale) + 0.5) / scale - 0.5  # [r]: where each HR row of the cell lies, in LR pixels
  taps = np.arange(-BICUBIC_RADIUS, BICUBIC_RADIUS + 1)  # [5]
  weights = keys_cubic(taps[None, :] - offsets[:, None])  # [r, 5]
  return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def bicubic_subpixels(images, scale, mix=None):
  """Bicubic interpolation by r as a sub-pixel convolution, fixed weights: [N, H, W, C] -> [N, H, W, r*r*D].

  Like ESPCN's last layer, each of the r*r output channels per colour holds one HR position of the LR
  pixel's r x r cell, in PS's channel order; here its 5x5 weights are the bicubic ones instead of learned.
  phase_shift(bicubic_subpixels(images, r), r, C) is the bicubic upscaled image [N, rH, rW, C]. The image
  is mirrored at its edges (tf.pad SYMMETRIC), as MATLAB's imresize does.

  `mix` [D, C] (default: the identity, D = C) is a colour matrix applied to every pixel. Interpolation and
  a colour matrix are both linear, so their order does not matter: folded into the kernel, the matrix
  acts at the LR pixels, r*r times fewer than the HR pixels it would otherwise be applied to.
  """
  channels = images.shape[-1]
  mix = np.eye(channels) if mix is None else mix
  weights_1d = bicubic_weights(scale)  # [r, 5]
  kernel = np.zeros([2 * BICUBIC_RADIUS + 1] * 2 + [channels, scale * scale * len(mix)], np.float32)
  for colour in range(len(mix)):
    for p in range(scale):  # row offset in the cell
      for q in range(scale):  # column offset: PS takes channel d*r*r + q*r + p to (p, q) of colour d
        cell_weights = np.outer(weights_1d[p], weights_1d[q])  # [5, 5]
        kernel[:, :, :, colour * scale * scale + q * scale + p] = cell_weights[..., None] * mix[colour]
  pad = [[0, 0], [BICUBIC_RADIUS, BICUBIC_RADIUS], [BICUBIC_RADIUS, BICUBIC_RADIUS], [0, 0]]
  padded = tf.pad(images, pad, mode='SYMMETRIC')  # [N, H+4, W+4, C]
  return tf.nn.conv2d(padded, kernel, strides=[1, 1, 1, 1], padding='VALID')  # [N, H, W, r*r*D]


def rgb_to_ycbcr(rgb):
  """float32 [..., 3] R, G, B in [0, 255] -> Y, Cb, Cr (BT.601 studio range, utils.YCBCR_FROM_RGB)."""
  ycbcr_from_rgb = utils.YCBCR_FROM_RGB.T.astype(np.float32)  # [3, 3]: (R, G, B) x (Y, Cb, Cr)
  return tf.tensordot(rgb, ycbcr_from_rgb, 1) + utils.YCBCR_OFFSET.astype(np.float32)


class Reconstruction(NamedTuple):
  """The tensors of reconstruction_graph."""
  lr_pixels: tf.Tensor  # uint8 placeholder [H, W, 3]: an RGB image
  lr_image: tf.Tensor  # the network's input, float32 [H, W, C], from lr_pixels unless fed (gray images are)
  sr_image: tf.Tensor  # the network's output: float32 [rH, rW, C]
  sr_pixels: tf.Tensor  # the reconstruction: uint8 [rH, rW, 3]


def reconstruction_graph(build_network, scale, channels):
  """The reconstruction step for colour images, 8-bit RGB in and out, as one graph around the network.

  `build_network` builds the network on a float32 batch [N, H, W, C] in [0, 1]; here the batch is one image.
  'y' (the paper): the network upscales Y; Cb and Cr are upscaled by bicubic interpolation; the three go
  back to RGB. R, G and B are sums of what Y adds and what Cb and Cr add; the second part is mixed at the
  LR pixels, inside the bicubic convolution (its `mix`), so only the sum is left to do at every HR pixel.
  'rgb' (the blog): the network upscales R, G and B.

  The steps after the convolutions touch every output value a few times each; XLA fuses them into one pass
  (README, "Speed and memory"). TensorFlow compiles that pass for an image shape once the shape recurs
  (frames of a video, tiles of one size); a shape seen once runs the same steps unfused, without the cost
  of compiling. Both must round alike, to the bit, or a tile would differ from a whole image: compiled, a
  multiply followed by an add becomes one fused multiply-add, rounded once instead of twice. So in 'y' mode
  Y's share is scaled before the fused pass, which then adds, rounds and rearranges; in 'rgb' mode it
  multiplies by 255 and rounds, which comes out the same either way.
  """
  lr_pixels = tf.placeholder(tf.uint8, [None, None, 3], name='lr_pixels')
  lr_rgb = tf.cast(lr_pixels, tf.float32)  # [H, W, 3] in [0, 255]
  if channels == 'y':
    lr_ycbcr = rgb_to_ycbcr(lr_rgb)  # [H, W, 3]
    network_input = lr_ycbcr[..., :1] / 255.0  # [H, W, 1]
  else:
    network_input = lr_rgb / 255.0  # [H, W, 3]
  lr_image = tf.placeholder_with_default(network_input, [None, None, utils.CHANNEL_MODES[channels]],
                                         name='lr_image')
  sr_images = build_network(lr_image[None])  # [1, rH, rW, C]: a batch of one
  if channels == 'y':
    rgb_from_ycbcr = utils.RGB_FROM_YCBCR.astype(np.float32)  # [3, 3]: (R, G, B) x (Y, Cb, Cr)
    offset = utils.YCBCR_OFFSET.astype(np.float32)  # [3]
    luma_gain = rgb_from_ycbcr[0, 0]  # Y's weight, the same in R, G and B (255/219)
    luma_share = (255.0 * luma_gain) * sr_images  # [1, rH, rW, 1]: what Y adds to each of R, G and B
    chroma_share = bicubic_subpixels(  # [1, H, W, r*r*3]: what Cb and Cr add to R, G, B, upscaled ...
        lr_ycbcr[None, ..., 1:] - offset[1:], scale, mix=rgb_from_ycbcr[:, 1:])
    y_offset_share = np.full(scale * scale * 3, -luma_gain * offset[0], np.float32)  # [r*r*3]
    chroma_share = tf.nn.bias_add(chroma_share, y_offset_share)  # ... plus Y's offset (a bias: no extra pass)
  with tf.xla.experimental.jit_scope():  # no multiply-then-add in here: see the docstring on rounding
    if channels == 'y':
      sr_rgb = luma_share + phase_shift(chroma_share, scale, 3)  # [1, rH, rW, 3]
    else:
      sr_rgb = 255.0 * sr_images  # [1, rH, rW, 3]
    sr_pixels = tf.saturate_cast(tf.round(sr_rgb[0]), tf.uint8)  # [rH, rW, 3]
  return Reconstruction(lr_pixels, lr_image, sr_images[0], sr_pixels)


def latest_checkpoint(directory):
  """The newest checkpoint that `directory` names in its state file, or None (also for no such folder)."""
  return tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None


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
  """Runs the reconstruction graph on whole images of any size: the reconstruction step.

  Colour images go through reconstruction_graph, pixels in, pixels out. A grayscale image stays grayscale
  in both modes: its gray level is the luminance that the 'y' network sees, and the 'rgb' network sees
  R = G = B and returns the mean of its three channels.

  Images larger than one tile are processed tile by tile, each with TILE_MARGIN pixels of context (more than
  the network's RECEPTIVE_RADIUS and BICUBIC_RADIUS): memory is bounded by the tile, and since every output
  pixel sees only the pixels within those radii, the result is that of one pass over the whole image, to
  the bit (see freeze and reconstruction_graph).
  """

  def __init__(self, session, scale, channels, output_activation, tile=DEFAULT_TILE, precision='float32'):
    """Adds reconstruction_graph to the session's graph, its network sharing the session's weights (those
    of train.py's training graph, or created here for an Upscaler of its own)."""
    self.session = session
    self.scale = scale
    self.channels = channels
    self.tile = tile
    self.precision = precision
    self.checkpoint = None
    network = functools.partial(espcn, scale=scale, channels=utils.CHANNEL_MODES[channels],
                                output_activation=output_activation, layer2_dtype=PRECISIONS[precision])
    with session.graph.as_default(), tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
      self.lr_pixels, self.lr_image, self.sr_image, self.sr_pixels = reconstruction_graph(
          network, scale, channels)

  @classmethod
  def from_checkpoint(cls, checkpoint_dir, scale, channels, tile=DEFAULT_TILE, precision='float32'):
    """Builds the inference graph that `checkpoint_dir` was trained with and restores its latest weights."""
    config = utils.read_model_config(checkpoint_dir)
    checkpoint = latest_checkpoint(checkpoint_dir)
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
    upscaler.freeze()
    return upscaler

  @classmethod
  def with_random_weights(cls, scale, channels, tile=DEFAULT_TILE, precision='float32', seed=0):
    """An untrained network (the initialisation of train.py): for speed measurements only."""
    upscaler = cls.build(scale, channels, 'none', tile, precision, seed)
    with upscaler.session.graph.as_default():
      upscaler.session.run(tf.global_variables_initializer())
    upscaler.checkpoint = 'random weights'
    upscaler.freeze()
    return upscaler

  @classmethod
  def build(cls, scale, channels, output_activation, tile, precision='float32', seed=None):
    """An Upscaler with a graph of its own, its weights not yet initialised or restored."""
    graph = tf.Graph()
    with graph.as_default():
      tf.set_random_seed(seed)
    return cls(tf.Session(graph=graph), scale, channels, output_activation, tile, precision)

  def freeze(self):
    """Turns the weights into constants of a graph of its own, the classic last step before deployment.

    Not only for tidiness: TensorFlow's oneDNN convolution treats a constant filter differently. Handed a
    variable, it picks its kernel by the image shape (for layer 2 here, im2col + GEMM at some shapes and a
    direct kernel at others), and they sum in different orders; handed a constant, it runs the direct
    kernel for every shape, whose sums do not depend on the shape. So tiles give the output of one pass, to
    the bit (tests/test_tiling.py; ONEDNN_VERBOSE=1 names the kernels).
    """
    outputs = [self.sr_image, self.sr_pixels]
    frozen = tf.graph_util.convert_variables_to_constants(
        self.session, self.session.graph.as_graph_def(), [tensor.op.name for tensor in outputs])
    graph = tf.Graph()
    with graph.as_default():
      tf.import_graph_def(frozen, name='')
    self.session.close()
    self.session = tf.Session(graph=graph)
    for name in Reconstruction._fields:
      setattr(self, name, graph.get_tensor_by_name(getattr(self, name).name))

  def network(self, lr_array):
    """float32 [H, W, C] in [0, 1] -> float32 [rH, rW, C]: the network alone on one image."""
    return self.session.run(self.sr_image, {self.lr_image: lr_array})

  def upscale(self, image):
    """uint8 [H, W, 3] RGB or [H, W] grayscale -> uint8 image of r*H x r*W in the same layout."""
    scale = self.scale
    height, width = image.shape[:2]
    boxes = tiles(height, width, self.tile)
    if len(boxes) == 1:
      return self._reconstruct(image)  # one pass: no copy into an output array
    output = np.empty((height * scale, width * scale) + image.shape[2:], np.uint8)
    for top, left, bottom, right in tqdm(boxes, desc='tiles', unit='tile', leave=False, disable=None):
      window_top, window_left = max(top - TILE_MARGIN, 0), max(left - TILE_MARGIN, 0)
      window = image[window_top:min(bottom + TILE_MARGIN, height),
                     window_left:min(right + TILE_MARGIN, width)]
      sr_window = self._reconstruct(window)  # [rh, rw] or [rh, rw, 3] of the window
      rows = slice((top - window_top) * scale, (bottom - window_top) * scale)
      columns = slice((left - window_left) * scale, (right - window_left) * scale)
      output[top * scale:bottom * scale, left * scale:right * scale] = sr_window[rows, columns]
    return output

  def _reconstruct(self, window):
    """uint8 [h, w, 3] or [h, w] -> uint8 [rh, rw, 3] or [rh, rw]."""
    if window.ndim == 3:
      return self.session.run(self.sr_pixels, {self.lr_pixels: window})
    sr = self.network(self.network_input(window))  # [rh, rw, C]
    return utils.to_uint8(255.0 * sr.mean(axis=2))  # 'y': the one channel; 'rgb': the mean of R, G, B

  def network_input(self, window):
    """What the network sees of a uint8 window, as float32 [h, w, C] in [0, 1].

    Of a colour window: Y or RGB, computed by the graph. A gray level is luminance: the 'y' network takes it
    as it is, the 'rgb' one sees R = G = B.
    """
    if window.ndim == 3:
      return self.session.run(self.lr_image, {self.lr_pixels: window})
    gray = window.astype(np.float32)[..., None] / 255.0  # [h, w, 1]
    return gray if self.channels == 'y' else np.repeat(gray, 3, axis=2)
