"""Running the trained network on whole images: the reconstruction graph, freezing, tiles and Upscaler.

espcn.py is the network. This module is what surrounds it at inference, 8-bit pixels in and out:

- reconstruction_graph: RGB -> YCbCr, the network on Y ('y' mode) or on R, G, B ('rgb'), bicubic chroma as
  a sub-pixel convolution with fixed weights, the colour merge, rounding to 8 bits; and for a video frame's
  4:2:0 planes, Y through the network and Cb, Cr through bicubic interpolation (chroma_graph), no RGB;
- Upscaler: restores a checkpoint (checkpoints.py), freezes the weights into constants, and runs the graph on
  images of any size and colour mode, tile by tile when they are large;
- --precision=bfloat16: layer 2 rewritten to bfloat16 in the frozen graph.

Why it is built this way (rounding to the bit, oneDNN's kernel choice, tiles, bfloat16): docs/PERFORMANCE.md.
"""
import functools
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from superres.runtime import tf  # first: TensorFlow's start-up settings (runtime.py), before espcn imports it
from superres import checkpoints
import espcn
from superres import choices
from superres import colour
from superres import image_files
from superres import model_flags
from superres import pairs

RECEPTIVE_RADIUS = 4  # LR pixels that reach one output pixel from each side: 2 (5x5) + 1 (3x3) + 1 (3x3)
TILE_MARGIN = 2 * RECEPTIVE_RADIUS  # LR context around a tile: tiles overlap by 16 >= the 9x9 receptive field
DEFAULT_TILE = choices.DEFAULT_TILE  # LR pixels per tile side (in choices.py: generate.py's --tile default)
BICUBIC_RADIUS = 2  # LR pixels on each side that bicubic interpolation weighs (a 5x5 window covers all r)


# ---------------------------------------------------------------------------------------------------------
# Bicubic interpolation as a sub-pixel convolution with fixed weights
# ---------------------------------------------------------------------------------------------------------

def keys_cubic(distance, a=-0.5):
  """Keys' cubic convolution kernel; a = -0.5 is the bicubic of MATLAB's imresize and of Pillow."""
  distance = np.abs(distance)
  near = ((a + 2) * distance - (a + 3)) * distance ** 2 + 1  # |d| <= 1
  far = ((distance - 5) * distance + 8) * distance * a - 4 * a  # 1 < |d| < 2
  return np.where(distance <= 1, near, np.where(distance < 2, far, 0.0))


def bicubic_weights(scale, shift=0.0):
  """[r, 5] float32: the weights of LR pixels -2..2 for HR offset p = 0..r-1 within an LR pixel's cell.

  HR pixel r*i + p has its centre at LR coordinate i + (p + 0.5) / r - 0.5 (pixel centres at integers),
  moved by `shift` LR pixels where the two grids are not centred on each other (chroma_siting_shift).
  """
  offsets = (np.arange(scale) + 0.5) / scale - 0.5 + shift  # [r]: where each HR row of the cell lies
  taps = np.arange(-BICUBIC_RADIUS, BICUBIC_RADIUS + 1)  # [5]
  weights = keys_cubic(taps[None, :] - offsets[:, None])  # [r, 5]
  return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def chroma_siting_shift(scale):
  """Where a 4:2:0 frame's upscaled chroma samples lie, relative to centred grids, in LR chroma pixels.

  H.264 (and MPEG-2, HEVC) put a chroma sample level with the left one of its two luma columns, and halfway
  between its two luma rows. Vertically that is the centred grid of bicubic_weights; horizontally, the HR
  chroma sample k sits at LR chroma column k / r - (r - 1) / (4r), not at (k + 0.5) / r - 0.5. Assumed for
  every clip: ffmpeg's decoder does not say where a clip's chroma lies (MJPEG centres it: off by a sixth of
  an LR chroma pixel at x3).
  """
  return (scale - 1) / (4 * scale)


def bicubic_subpixels(images, scale, mix=None, column_shift=0.0):
  """Bicubic interpolation by r as a sub-pixel convolution, fixed weights: [N, H, W, C] -> [N, H, W, r*r*D].

  Like ESPCN's last layer, each of the r*r output channels per colour holds one HR position of the LR
  pixel's r x r cell, in PS's channel order; here its 5x5 weights are the bicubic ones instead of learned.
  phase_shift(bicubic_subpixels(images, r), r, C) is the bicubic upscaled image [N, rH, rW, C]. The image
  is mirrored at its edges (tf.pad SYMMETRIC), as MATLAB's imresize does.

  `mix` [D, C] (default: the identity, D = C) is a colour matrix applied to every pixel. Interpolation and
  a colour matrix are both linear, so their order does not matter: folded into the kernel, the matrix
  acts at the LR pixels, r*r times fewer than the HR pixels it would otherwise be applied to.
  `column_shift` moves the HR columns (chroma_siting_shift).
  """
  channels = images.shape[-1]
  mix = np.eye(channels) if mix is None else mix
  row_weights, column_weights = bicubic_weights(scale), bicubic_weights(scale, column_shift)  # [r, 5] each
  kernel = np.zeros([2 * BICUBIC_RADIUS + 1] * 2 + [channels, scale * scale * len(mix)], np.float32)
  for colour in range(len(mix)):
    for p in range(scale):  # row offset in the cell
      for q in range(scale):  # column offset: PS takes channel d*r*r + p*r + q to (p, q) of colour d
        cell_weights = np.outer(row_weights[p], column_weights[q])  # [5, 5]
        kernel[:, :, :, colour * scale * scale + p * scale + q] = cell_weights[..., None] * mix[colour]
  pad = [[0, 0], [BICUBIC_RADIUS, BICUBIC_RADIUS], [BICUBIC_RADIUS, BICUBIC_RADIUS], [0, 0]]
  padded = tf.pad(images, pad, mode='SYMMETRIC')  # [N, H+4, W+4, C]
  return tf.nn.conv2d(padded, kernel, strides=[1, 1, 1, 1], padding='VALID')  # [N, H, W, r*r*D]


# ---------------------------------------------------------------------------------------------------------
# The reconstruction graph: 8-bit pixels in, 8-bit pixels out
# ---------------------------------------------------------------------------------------------------------

def rgb_to_ycbcr(rgb):
  """float32 [..., 3] R, G, B in [0, 255] -> Y, Cb, Cr (BT.601 studio range, colour.YCBCR_FROM_RGB)."""
  ycbcr_from_rgb = colour.YCBCR_FROM_RGB.T.astype(np.float32)  # [3, 3]: (R, G, B) x (Y, Cb, Cr)
  return tf.tensordot(rgb, ycbcr_from_rgb, 1) + colour.YCBCR_OFFSET.astype(np.float32)


class Reconstruction(NamedTuple):
  """The tensors of reconstruction_graph."""
  lr_pixels: tf.Tensor  # uint8 placeholder [H, W, 3]: an RGB image
  lr_image: tf.Tensor  # the network's input, float32 [H, W, C], from lr_pixels unless fed (gray images are)
  sr_image: tf.Tensor  # the network's output: float32 [rH, rW, C]
  sr_pixels: tf.Tensor  # the reconstruction: uint8 [rH, rW, 3]
  sr_channels: tf.Tensor  # the network's output rounded to 8 bits: uint8 [rH, rW, C] (a video frame's Y)
  lr_chroma: tf.Tensor  # uint8 placeholder [h, w, 2]: the Cb and Cr planes of a 4:2:0 video frame
  sr_chroma: tf.Tensor  # those planes upscaled by bicubic interpolation: uint8 [rh, rw, 2]


def reconstruction_graph(build_network, scale, channels):
  """The reconstruction step for colour images, 8-bit RGB in and out, as one graph around the network.

  `build_network` builds the network on a float32 batch [N, H, W, C] in [0, 1]; here the batch is one image.
  'y' (the paper): the network upscales Y; Cb and Cr are upscaled by bicubic interpolation; the three go
  back to RGB. R, G and B are sums of what Y adds and what Cb and Cr add; the second part is mixed at the
  LR pixels, inside the bicubic convolution (its `mix`), so only the sum is left to do at every HR pixel.
  'rgb' (the blog): the network upscales R, G and B.

  The steps after the convolutions run as one pass fused by XLA. In 'y' mode Y's share is scaled before
  that pass, which then only adds, rounds and rearranges, so that an image rounds alike whether the pass
  is compiled or not (docs/PERFORMANCE.md, "Rounding to the bit").
  """
  lr_pixels = tf.placeholder(tf.uint8, [None, None, 3], name='lr_pixels')
  lr_rgb = tf.cast(lr_pixels, tf.float32)  # [H, W, 3] in [0, 255]
  if channels == 'y':
    lr_ycbcr = rgb_to_ycbcr(lr_rgb)  # [H, W, 3]
    network_input = lr_ycbcr[..., :1] / 255.0  # [H, W, 1]
  else:
    network_input = lr_rgb / 255.0  # [H, W, 3]
  lr_image = tf.placeholder_with_default(network_input, [None, None, model_flags.CHANNEL_MODES[channels]],
                                         name='lr_image')
  sr_images = build_network(lr_image[None])  # [1, rH, rW, C]: a batch of one
  if channels == 'y':
    rgb_from_ycbcr = colour.RGB_FROM_YCBCR.astype(np.float32)  # [3, 3]: (R, G, B) x (Y, Cb, Cr)
    offset = colour.YCBCR_OFFSET.astype(np.float32)  # [3]
    luma_gain = rgb_from_ycbcr[0, 0]  # Y's weight, the same in R, G and B (255/219)
    luma_share = (255.0 * luma_gain) * sr_images  # [1, rH, rW, 1]: what Y adds to each of R, G and B
    chroma_share = bicubic_subpixels(  # [1, H, W, r*r*3]: what Cb and Cr add to R, G, B, upscaled ...
        lr_ycbcr[None, ..., 1:] - offset[1:], scale, mix=rgb_from_ycbcr[:, 1:])
    y_offset_share = np.full(scale * scale * 3, -luma_gain * offset[0], np.float32)  # [r*r*3]
    chroma_share = tf.nn.bias_add(chroma_share, y_offset_share)  # ... plus Y's offset (a bias: no extra pass)
  with tf.xla.experimental.jit_scope():  # no multiply-then-add in here: see the docstring on rounding
    if channels == 'y':
      sr_rgb = luma_share + espcn.phase_shift(chroma_share, scale, 3)  # [1, rH, rW, 3]
    else:
      sr_rgb = 255.0 * sr_images  # [1, rH, rW, 3]
    sr_pixels = tf.saturate_cast(tf.round(sr_rgb[0]), tf.uint8)  # [rH, rW, 3]
  with tf.xla.experimental.jit_scope():  # scaling, rounding and cast in one pass over a clip's frames
    sr_channels = tf.saturate_cast(tf.round(255.0 * sr_images[0]), tf.uint8)  # [rH, rW, C]
  return Reconstruction(lr_pixels, lr_image, sr_images[0], sr_pixels, sr_channels, *chroma_graph(scale))


def chroma_graph(scale):
  """(lr_chroma, sr_chroma): a 4:2:0 frame's chroma planes upscaled by bicubic interpolation, where H.264
  sites them (chroma_siting_shift). A video frame's colour in 'y' mode, with no RGB on either side."""
  lr_chroma = tf.placeholder(tf.uint8, [None, None, 2], name='lr_chroma')  # [h, w, 2]: Cb and Cr
  subpixels = bicubic_subpixels(tf.cast(lr_chroma, tf.float32)[None], scale,  # [1, h, w, r*r*2]
                                column_shift=chroma_siting_shift(scale))
  with tf.xla.experimental.jit_scope():  # shuffle, rounding and cast in one pass over a clip's frames
    sr_chroma = tf.saturate_cast(tf.round(espcn.phase_shift(subpixels, scale, 2)[0]), tf.uint8)  # [rh, rw, 2]
  return lr_chroma, sr_chroma


# ---------------------------------------------------------------------------------------------------------
# Freezing, and layer 2 in bfloat16
# ---------------------------------------------------------------------------------------------------------

def frozen_graph_def(session, output_names):
  """The session's graph with every variable replaced by a constant of its current value.

  Not only the classic last step before deployment: handed constant filters, TensorFlow's oneDNN
  convolutions keep one kernel for every image shape, so tiles give the bytes of one pass
  (docs/PERFORMANCE.md, "Why the graph is frozen").
  """
  return tf.graph_util.convert_variables_to_constants(session, session.graph.as_graph_def(), output_names)


def _cast_node(name, source, source_dtype, target_dtype):
  node = tf.NodeDef(name=name, op='Cast', input=[source])
  node.attr['SrcT'].type = source_dtype.as_datatype_enum
  node.attr['DstT'].type = target_dtype.as_datatype_enum
  node.attr['Truncate'].b = False
  return node


def layer2_in_bfloat16(graph_def, scope='layer2-conv2'):
  """Rewrites a frozen graph so that layer 2 (81% of the 'y' work, 59% of 'rgb') runs in bfloat16.

  Its input, weights and bias are cast to bfloat16, its convolution, bias add and tanh run in bfloat16, and
  its output is cast back to float32 for layer 3. Layers 1 and 3 stay float32: bfloat16's 8-bit mantissa
  cannot hold the 256 gray levels of the input, and would round the output, the image, by up to half a gray
  level. For CPUs with native bfloat16 (AVX512-BF16, AMX); others emulate it, slower than float32.
  """
  nodes = {node.name: node for node in graph_def.node}
  conv = next(node for node in graph_def.node if node.op == 'Conv2D' and node.name.startswith(scope + '/'))
  add = next(node for node in graph_def.node if node.op in ('Add', 'AddV2') and node.input[0] == conv.name)
  tanh = next(node for node in graph_def.node if node.op == 'Tanh' and node.input[0] == add.name)
  new_nodes = []
  for node, index in ((conv, 0), (conv, 1), (add, 1)):  # input, weights, bias: to bfloat16
    cast = _cast_node(f'{node.name}/input{index}_bfloat16', node.input[index], tf.float32, tf.bfloat16)
    node.input[index] = cast.name
    new_nodes.append(cast)
  for node in (conv, add, tanh):
    node.attr['T'].type = tf.bfloat16.as_datatype_enum
  back = _cast_node(f'{tanh.name}_float32', tanh.name, tf.bfloat16, tf.float32)
  for node in nodes.values():  # the consumers of layer 2's output read the float32 copy
    node.input[:] = [back.name if name == tanh.name else name for name in node.input]
  graph_def.node.extend(new_nodes + [back])
  return graph_def


# ---------------------------------------------------------------------------------------------------------
# Upscaler: the reconstruction on whole images of any size and colour mode
# ---------------------------------------------------------------------------------------------------------

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
  the bit (docs/PERFORMANCE.md).
  """

  def __init__(self, session, scale, channels, output_activation, tile=DEFAULT_TILE):
    """Adds reconstruction_graph to the session's graph, its network sharing the session's weights (those
    of train.py's training graph, or created here for an Upscaler of its own)."""
    self.session = session
    self.scale = scale
    self.channels = channels
    self.output_activation = output_activation
    self.tile = tile
    self.precision = 'float32'
    self.checkpoint = None
    network = functools.partial(espcn.espcn, scale=scale, channels=model_flags.CHANNEL_MODES[channels],
                                output_activation=output_activation)
    with session.graph.as_default(), tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
      self._set_tensors(reconstruction_graph(network, scale, channels))

  @classmethod
  def from_checkpoint(cls, checkpoint_dir, scale, channels, tile=DEFAULT_TILE, precision='float32'):
    """Builds the inference graph that `checkpoint_dir` was trained with and restores its latest weights."""
    config = checkpoints.read_trained_config(checkpoint_dir, scale, channels)
    upscaler = cls.build(scale, channels, config['output_activation'], tile)
    with upscaler.session.graph.as_default():
      upscaler.checkpoint = checkpoints.restore(upscaler.session, checkpoint_dir)
    upscaler.freeze(precision)
    return upscaler

  @classmethod
  def with_random_weights(cls, scale, channels, tile=DEFAULT_TILE, precision='float32', seed=0):
    """An untrained network (the initialisation of train.py): for speed measurements only."""
    upscaler = cls.build(scale, channels, 'none', tile, seed)
    with upscaler.session.graph.as_default():
      upscaler.session.run(tf.global_variables_initializer())
    upscaler.checkpoint = 'random weights'
    upscaler.freeze(precision)
    return upscaler

  @classmethod
  def build(cls, scale, channels, output_activation, tile, seed=None):
    """An Upscaler with a graph of its own, its weights not yet initialised or restored."""
    graph = tf.Graph()
    with graph.as_default():
      tf.set_random_seed(seed)
    return cls(tf.Session(graph=graph), scale, channels, output_activation, tile)

  def _set_tensors(self, reconstruction):
    """The reconstruction's tensors as attributes of the same names (self.lr_pixels ...)."""
    for name, tensor in reconstruction._asdict().items():
      setattr(self, name, tensor)

  def freeze(self, precision='float32'):
    """Turns the weights into constants of a graph of its own (frozen_graph_def), in `precision`."""
    outputs = [self.sr_image, self.sr_pixels, self.sr_channels, self.sr_chroma]
    frozen = frozen_graph_def(self.session, [tensor.op.name for tensor in outputs])
    if precision == 'bfloat16':
      frozen = layer2_in_bfloat16(frozen)
    graph = tf.Graph()
    with graph.as_default():
      tf.import_graph_def(frozen, name='')
    self.session.close()
    self.session = tf.Session(graph=graph)
    self.precision = precision
    self._set_tensors(Reconstruction(*(graph.get_tensor_by_name(getattr(self, name).name)
                                       for name in Reconstruction._fields)))

  def network(self, lr_array):
    """float32 [H, W, C] in [0, 1] -> float32 [rH, rW, C]: the network alone on one image."""
    return self.session.run(self.sr_image, {self.lr_image: lr_array})

  def upscale(self, image):
    """uint8 [H, W, 3] RGB or [H, W] grayscale -> uint8 image of r*H x r*W in the same layout."""
    return self._tiled(image, self._reconstruct)

  def upscale_yuv420(self, luma, chroma):
    """Upscales the planes of a 4:2:0 video frame, uint8 Y [H, W] and Cb, Cr [2, H/2, W/2], to planes of
    the same layout for rH x rW: Y by the network ('y' models only), Cb and Cr by bicubic interpolation
    (chroma_graph). No RGB in or out, a quarter of the chroma: video.py's path for even frame sizes."""
    if self.channels != 'y':
      raise ValueError(f'upscale_yuv420 needs a y model, not {self.channels}')
    sr_luma = self._tiled(luma, lambda window: self.session.run(
        self.sr_channels, {self.lr_image: self.network_input(window)})[..., 0])  # [rH, rW]
    sr_chroma = self._tiled(chroma.transpose(1, 2, 0), lambda window: self._narrow_safe(  # [rh, rw, 2]
        window, lambda wide: self.session.run(self.sr_chroma, {self.lr_chroma: wide})))
    return sr_luma, sr_chroma.transpose(2, 0, 1)  # [2, rh, rw]

  def _tiled(self, image, reconstruct):
    """reconstruct(window) on the whole image in one pass, or tile by tile with TILE_MARGIN pixels of
    context (the class docstring)."""
    scale = self.scale
    height, width = image.shape[:2]
    boxes = tiles(height, width, self.tile)
    if len(boxes) == 1:
      return reconstruct(image)  # one pass: no copy into an output array
    output = np.empty((height * scale, width * scale) + image.shape[2:], np.uint8)
    for top, left, bottom, right in tqdm(boxes, desc='tiles', unit='tile', leave=False, disable=None):
      window_top, window_left = max(top - TILE_MARGIN, 0), max(left - TILE_MARGIN, 0)
      window = image[window_top:min(bottom + TILE_MARGIN, height),
                     window_left:min(right + TILE_MARGIN, width)]
      sr_window = reconstruct(window)  # [rh, rw] or [rh, rw, C] of the window
      rows = slice((top - window_top) * scale, (bottom - window_top) * scale)
      columns = slice((left - window_left) * scale, (right - window_left) * scale)
      output[top * scale:bottom * scale, left * scale:right * scale] = sr_window[rows, columns]
    return output

  def _reconstruct(self, window):
    """uint8 [h, w, 3] or [h, w] -> uint8 [rh, rw, 3] or [rh, rw]."""
    if window.ndim == 3:
      if self.channels == 'y':
        return self._narrow_safe(window, lambda wide: self.session.run(self.sr_pixels, {self.lr_pixels: wide}))
      return self.session.run(self.sr_pixels, {self.lr_pixels: window})
    sr = self.network(self.network_input(window))  # [rh, rw, C]
    return colour.to_uint8(255.0 * sr.mean(axis=2))  # 'y': the one channel; 'rgb': the mean of R, G, B

  def _narrow_safe(self, window, upscale_chroma):
    """upscale_chroma(window) [h, w, C] for a window of any size: bicubic chroma's mirrored border (tf.pad
    SYMMETRIC) can be at most as wide as the image, so a side of one pixel (a 1x1 photo, a 1-pixel strip)
    is doubled, its mirror image, and the result cropped back."""
    height, width = window.shape[:2]
    if min(height, width) >= BICUBIC_RADIUS:
      return upscale_chroma(window)
    doubled = np.pad(window, [(0, max(0, BICUBIC_RADIUS - height)), (0, max(0, BICUBIC_RADIUS - width)), (0, 0)],
                     mode='edge')
    return upscale_chroma(doubled)[:height * self.scale, :width * self.scale]

  def network_input(self, window):
    """What the network sees of a uint8 window, as float32 [h, w, C] in [0, 1].

    Of a colour window: Y or RGB, computed by the graph. A gray level is luminance: the 'y' network takes it
    as it is, the 'rgb' one sees R = G = B.
    """
    if window.ndim == 3:
      return self.session.run(self.lr_image, {self.lr_pixels: window})
    gray = window.astype(np.float32)[..., None] / 255.0  # [h, w, 1]
    return gray if self.channels == 'y' else np.repeat(gray, 3, axis=2)


def upscale_image(upscaler, image):
  """Upscales a PIL image to uint8 pixels of its kind: gray [rH, rW] or RGB [rH, rW, 3], with alpha
  (upscaled with bicubic) as one more channel if the image has transparency.

  Pixels, not a PIL image: a 12000x12000 result is 432 MB, and every conversion would copy it.
  """
  has_alpha = image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info
  colour_mode = pairs.colour_mode(image)
  upscaled = upscaler.upscale(np.asarray(image.convert(colour_mode)))
  if not has_alpha:
    return upscaled
  size = (upscaled.shape[1], upscaled.shape[0])
  alpha = pairs.bicubic_resize(image.convert(colour_mode + 'A').getchannel('A'), size)
  return np.dstack([upscaled, np.asarray(alpha)])


def upscale_file(upscaler, load, output):
  """Decode (`load()`), colour handling and network, PNG encoding: the whole job for one image. The
  image's ICC colour profile, if it has one, goes into the PNG (image_files.write_png): the pixels keep the
  colour space they were in, so a viewer shows the upscaled photo in the colours of the original."""
  image = load()
  image_files.save_png(upscale_image(upscaler, image), output, image.info.get('icc_profile'))
