r"""Draws the README's comparison figure from the images that `generate.py --eval_dir` saved.

For one evaluated image it shows the same crop of LR (nearest-neighbour, to see its pixels), bicubic,
ESPCN and HR side by side, enlarged, each labelled with its whole-image Y-PSNR against HR:

  python generate.py --eval_dir=data/Set5 --scale=3 --channels=y --output_dir=result/set5_y_x3
  python -m tools.make_figure --result_dir=result/set5_y_x3 --name=butterfly --crop=84,84,96,96 \
      --zoom=2 --output=result/butterfly_y_x3.png
"""
import os

from absl import app
from absl import flags
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from superres import files
from superres import image_files
from superres import metrics

FLAGS = flags.FLAGS
PANELS = (('lr', 'LR (nearest)'), ('bicubic', 'bicubic'), ('espcn', 'ESPCN'), ('hr', 'HR'))
LABEL_HEIGHT = 20
LABEL_FONT_SIZE = 13  # Pillow's scalable default font (the bitmap one has no sizes)
GAP = 4


def define_flags():
  flags.DEFINE_string('result_dir', 'result', 'Folder where generate.py --eval_dir saved <name>_lr.png etc.')
  flags.DEFINE_string('name', 'butterfly', 'Which evaluated image to show.')
  flags.DEFINE_list('crop', ['60', '60', '96', '96'], 'Crop in HR pixels: left,top,width,height.')
  flags.DEFINE_integer('zoom', 3, 'Enlargement of each crop (nearest neighbour).', lower_bound=1)
  flags.DEFINE_string('output', 'result/comparison.png', 'PNG file to write.')


def load_panels(result_dir, name):
  """The four saved images of `name` (the LR one enlarged to HR size with nearest neighbour), and r."""
  images = {key: image_files.load_image(os.path.join(result_dir, f'{name}_{key}.png')) for key, _ in PANELS}
  scale = images['hr'].width // images['lr'].width
  images['lr'] = images['lr'].resize(images['hr'].size, Image.NEAREST)
  return images, scale


def compose(images, box, zoom, scale):
  """Crops every panel to `box`, enlarges it, and lays the panels out in a row with their labels."""
  left, top, width, height = box
  panel_size = (width * zoom, height * zoom)
  figure = Image.new('RGB', (len(PANELS) * (panel_size[0] + GAP) - GAP, panel_size[1] + LABEL_HEIGHT),
                     'white')
  draw = ImageDraw.Draw(figure)
  font = ImageFont.load_default(size=LABEL_FONT_SIZE)
  for index, (key, title) in enumerate(PANELS):
    crop = images[key].crop((left, top, left + width, top + height)).resize(panel_size, Image.NEAREST)
    panel_left = index * (panel_size[0] + GAP)
    figure.paste(crop.convert('RGB'), (panel_left, 0))
    label = title
    if key in ('bicubic', 'espcn'):
      label += f'  {metrics.psnr_y(images["hr"], images[key], scale):.2f} dB'
    draw.text((panel_left + 2, panel_size[1] + 3), label, fill='black', font=font)
  return figure


def parse_crop(values):
  """--crop as [left, top, width, height]: four integers, a non-empty box."""
  try:
    box = [int(value) for value in values]
  except ValueError:
    box = []
  if len(box) != 4 or min(box[2:]) <= 0:
    raise files.InputError(f'--crop={",".join(values)}: expected left,top,width,height, e.g. 60,60,96,96')
  return box


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  box = parse_crop(FLAGS.crop)
  files.ensure_writable_parent(FLAGS.output)
  images, scale = load_panels(FLAGS.result_dir, FLAGS.name)
  left, top, width, height = box
  if left < 0 or top < 0 or left + width > images['hr'].width or top + height > images['hr'].height:
    raise files.InputError(f'--crop={",".join(FLAGS.crop)}: outside the {images["hr"].width}x'
                           f'{images["hr"].height} image {FLAGS.name}')
  image_files.save_png(compose(images, box, FLAGS.zoom, scale), FLAGS.output)
  print(f'{FLAGS.output}: {FLAGS.name}, crop {box}, x{scale}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
