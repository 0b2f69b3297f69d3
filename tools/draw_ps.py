r"""Draws the README's picture of the periodic shuffle (docs/ps.png) from what espcn.phase_shift returns.

It builds a small feature tensor [1, H, W, r*r*C] (default: a 2x2 LR image, r = 2, C = 3) whose every
value encodes where it comes from (100 * LR pixel + channel), runs espcn.phase_shift and
tf.nn.depth_to_space on it in a session, and reads the labels of the picture back from their outputs:
each HR pixel is filled with the colour of the LR pixel it came from and labelled with the channel that
PS took it from. Nothing in the picture is computed by hand.

  python -m tools.draw_ps --output=docs/ps.png
"""

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from superres.runtime import tf  # first: TensorFlow's start-up settings (runtime.py), before espcn imports it
import espcn
from superres import files
from superres import image_files

FLAGS = flags.FLAGS
CODE = 100  # feature value = CODE * LR pixel index + channel index (both < CODE)
CELL = 34  # pixels per drawn cell
GAP = 8  # between maps
BLOCK_GAP = 24  # between groups of maps
MARGIN = 16
TEXT_LINE = 20
LR_COLOURS = ((255, 179, 186), (255, 223, 150), (186, 255, 201), (173, 216, 255),  # one per LR pixel
              (221, 190, 255), (255, 200, 240), (200, 230, 230), (230, 230, 180), (210, 210, 210))
COLOUR_NAMES = {1: ('Y',), 3: ('R', 'G', 'B')}


def define_flags():
  flags.DEFINE_string('output', 'result/ps.png', 'PNG file to write.')
  flags.DEFINE_integer('scale', 2, 'Upscaling factor r.', lower_bound=2, upper_bound=4)
  flags.DEFINE_integer('colours', 3, 'Colour channels C of the output: 3 (R, G, B) or 1 (Y).')
  flags.DEFINE_integer('lr_size', 2, 'Side of the square LR image, in pixels.', lower_bound=1,
                       upper_bound=3)


def labelled_features(lr_size, scale, colours):
  """float32 [1, H, W, r*r*C]: the value of channel k at LR pixel (h, w) is CODE * (h*W + w) + k."""
  depth = scale * scale * colours
  pixel = np.arange(lr_size * lr_size).reshape(1, lr_size, lr_size, 1)
  return (CODE * pixel + np.arange(depth).reshape(1, 1, 1, depth)).astype(np.float32)


def shuffle(features, scale, colours):
  """Runs espcn.phase_shift and tf.nn.depth_to_space on `features`: two int arrays [rH, rW, C]."""
  graph = tf.Graph()
  with graph.as_default(), tf.Session(graph=graph) as session:
    placeholder = tf.placeholder(tf.float32, [None, None, None, features.shape[-1]])
    ps, d2s = session.run([espcn.phase_shift(placeholder, scale, colours),
                           tf.nn.depth_to_space(placeholder, scale)], {placeholder: features})
  return np.rint(ps[0]).astype(int), np.rint(d2s[0]).astype(int)


def check_cells(hr, scale, name):
  """Both orders must keep every HR pixel in the r x r cell of its LR pixel: decoded from the output."""
  rows, columns = np.mgrid[0:hr.shape[0], 0:hr.shape[1]]
  expected = (rows // scale) * (hr.shape[1] // scale) + columns // scale
  if not np.all(hr // CODE == expected[..., None]):
    raise AssertionError(f'{name}: an HR pixel left the cell of its LR pixel')


class Canvas:
  """A white image with helpers to draw labelled grids of cells."""

  def __init__(self, width, height):
    self.image = Image.new('RGB', (width, height), 'white')
    self.draw = ImageDraw.Draw(self.image)
    self.font = ImageFont.load_default(size=13)
    self.small = ImageFont.load_default(size=11)

  def text(self, xy, text, font=None):
    self.draw.text(xy, text, fill='black', font=font or self.font)

  def grid(self, left, top, codes, thick_every=0):
    """Cells filled with the colour of their LR pixel (code // CODE), labelled with their channel."""
    for (row, column), code in np.ndenumerate(codes):
      x, y = left + column * CELL, top + row * CELL
      self.draw.rectangle([x, y, x + CELL, y + CELL], fill=LR_COLOURS[code // CODE], outline='gray')
      self.draw.text((x + CELL / 2, y + CELL / 2), str(code % CODE), fill='black', font=self.font,
                     anchor='mm')
    if thick_every:  # the r x r cells of the HR image
      height, width = codes.shape
      for row in range(0, height + 1, thick_every):
        self.draw.line([left, top + row * CELL, left + width * CELL, top + row * CELL], 'black', 2)
      for column in range(0, width + 1, thick_every):
        self.draw.line([left + column * CELL, top, left + column * CELL, top + height * CELL], 'black', 2)


def draw(features, ps, d2s, scale, colours):
  """The picture: LR pixels, the feature maps by colour block, then PS's and depth_to_space's outputs."""
  lr_size = features.shape[1]
  names = COLOUR_NAMES[colours]
  map_side = lr_size * CELL
  per_block = scale * scale
  hr_side = lr_size * scale * CELL
  block_width = per_block * (map_side + GAP) - GAP
  lr_width = max(map_side, 120)
  maps_left = MARGIN + lr_width + BLOCK_GAP
  planes_width = colours * (hr_side + BLOCK_GAP) - BLOCK_GAP
  width = max(maps_left + 110 + block_width, MARGIN + 2 * planes_width + 3 * BLOCK_GAP) + MARGIN
  maps_top = MARGIN + 2 * TEXT_LINE
  block_height = TEXT_LINE + map_side + GAP
  output_top = maps_top + colours * block_height + BLOCK_GAP
  height = output_top + 3 * TEXT_LINE + hr_side + 2 * TEXT_LINE + MARGIN
  canvas = Canvas(width, height)
  canvas.text((MARGIN, MARGIN), f'The periodic shuffle, r = {scale}, C = {colours}: a {lr_size}x{lr_size} '
              f'LR image with {per_block * colours} channels becomes a {lr_size * scale}x{lr_size * scale} '
              f'HR image with {colours}. Colours: the LR pixel; numbers: the channel k.')

  canvas.text((MARGIN, maps_top), 'LR pixels')
  pixels = np.arange(lr_size * lr_size).reshape(lr_size, lr_size)
  for (row, column), pixel in np.ndenumerate(pixels):
    x, y = MARGIN + column * CELL, maps_top + TEXT_LINE + row * CELL
    canvas.draw.rectangle([x, y, x + CELL, y + CELL], fill=LR_COLOURS[pixel], outline='gray')
    canvas.draw.text((x + CELL / 2, y + CELL / 2), f'{row},{column}', fill='black', font=canvas.small,
                     anchor='mm')

  for colour in range(colours):  # the feature maps, one row per colour block of r*r channels
    top = maps_top + colour * block_height
    first = colour * per_block
    canvas.text((maps_left, top + TEXT_LINE + map_side / 2 - 7),
                f'{names[colour]}: k = {first}..{first + per_block - 1}')
    for index in range(per_block):
      channel = first + index
      left = maps_left + 110 + index * (map_side + GAP)
      canvas.text((left, top), f'k={channel}', font=canvas.small)
      canvas.grid(left, top + TEXT_LINE, features[0, :, :, channel].astype(int))

  outputs = (('espcn.phase_shift (this repo): HR(r*h+p, r*w+q, c) = k = c*r*r + p*r + q', ps),
             ('tf.nn.depth_to_space: HR(r*h+p, r*w+q, c) = k = (p*r + q)*C + c', d2s))
  for number, (title, hr) in enumerate(outputs):
    left = MARGIN + number * (planes_width + 3 * BLOCK_GAP)
    title_lines = title.split(': ')
    canvas.text((left, output_top), title_lines[0] + ':')
    canvas.text((left, output_top + TEXT_LINE), title_lines[1], font=canvas.small)
    for colour in range(colours):
      plane_left = left + colour * (hr_side + BLOCK_GAP)
      canvas.text((plane_left, output_top + 2 * TEXT_LINE + 4), f'colour c = {colour} ({names[colour]})',
                  font=canvas.small)
      canvas.grid(plane_left, output_top + 3 * TEXT_LINE, hr[:, :, colour], thick_every=scale)
  canvas.text((MARGIN, output_top + 3 * TEXT_LINE + hr_side + TEXT_LINE / 2),
              'Thick lines: the r x r cell of one LR pixel. p, q: row and column offset in the cell. '
              'Both outputs are read from the ops themselves, run on the features above.', font=canvas.small)
  return canvas.image


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  colours = FLAGS.colours
  if colours not in COLOUR_NAMES:
    raise files.InputError(f'--colours={colours}: expected 1 (Y) or 3 (R, G, B)')
  files.ensure_writable_parent(FLAGS.output)
  features = labelled_features(FLAGS.lr_size, FLAGS.scale, colours)
  ps, d2s = shuffle(features, FLAGS.scale, colours)
  check_cells(ps, FLAGS.scale, 'espcn.phase_shift')
  check_cells(d2s, FLAGS.scale, 'tf.nn.depth_to_space')
  image_files.save_png(draw(features, ps, d2s, FLAGS.scale, colours), FLAGS.output)
  print(f'{FLAGS.output}: PS and depth_to_space, r = {FLAGS.scale}, C = {colours}, '
        f'{FLAGS.lr_size}x{FLAGS.lr_size} LR pixels')


if __name__ == '__main__':
  define_flags()
  app.run(main)
