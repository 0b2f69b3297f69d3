"""Restores a trained ESPCN and upscales images, or scores it against ground truth.

Upscale a file, a folder or a comma-separated list (PNG out, one per input):
  python generate.py --input=photo.jpg --output_dir=result --scale=3 --channels=rgb
With no --input it upscales a sample photo that scikit-image ships (the main job of the README).

Evaluate on a folder of ground-truth images (PSNR/SSIM on Y, bicubic and ESPCN, a table and optional JSON):
  python generate.py --eval_dir=../shared/data/Set5 --scale=3 --channels=y --json=result/set5_x3.json
"""
import os

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from tqdm import tqdm

import espcn
import utils

FLAGS = flags.FLAGS
SHIPPED_CHECKPOINTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'checkpoint')
SAMPLE_PHOTO = 'astronaut'  # skimage.data.astronaut(): a 512x512 photo, inside scikit-image's wheel


def define_flags():
  """The command line, defined only when run as a script so that other scripts and tests can import it."""
  utils.define_model_flags()
  flags.adopt_module_key_flags(utils)
  flags.DEFINE_string('input', '', 'Image file, folder or comma-separated list to upscale. '
                      f'Default: the sample photo skimage.data.{SAMPLE_PHOTO}().')
  flags.DEFINE_string('output_dir', 'result', 'Folder for the upscaled PNGs (and the evaluation images).')
  flags.DEFINE_string('checkpoint_dir', '', 'Trained model to use. Default: the shipped model for '
                      '--scale/--channels, checkpoint/espcn_<channels>_x<scale>.')
  flags.DEFINE_string('eval_dir', '', 'Evaluate instead: a folder of ground-truth (HR) images.')
  flags.DEFINE_string('json', '', 'With --eval_dir: also write the scores to this JSON file.')
  flags.DEFINE_integer('tile', espcn.DEFAULT_TILE, 'Largest LR tile side processed in one pass; larger '
                       'images go in overlapping tiles, with the same result and bounded memory.',
                       lower_bound=1)


def shipped_checkpoint_dir(channels, scale):
  return os.path.join(SHIPPED_CHECKPOINTS, f'espcn_{channels}_x{scale}')


# ---------------------------------------------------------------------------------------------------------
# Upscaling images of any colour mode
# ---------------------------------------------------------------------------------------------------------

def upscale_image(upscaler, image):
  """Upscales a PIL image, keeping its kind: gray stays gray, alpha is kept (upscaled with bicubic)."""
  if image.mode in ('I', 'F') or image.mode.startswith('I;'):
    raise utils.InputError(f'{image.filename}: {image.mode} images (16/32-bit) are not supported; '
                           f'convert to 8 bits per channel first')
  has_alpha = image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info
  colour_mode = 'L' if image.mode in ('1', 'L', 'LA') else 'RGB'
  colour = np.asarray(image.convert(colour_mode))
  upscaled = Image.fromarray(upscaler.upscale(colour))
  if not has_alpha:
    return upscaled
  alpha = utils.bicubic_resize(image.convert(colour_mode + 'A').getchannel('A'), upscaled.size)
  upscaled.putalpha(alpha)
  return upscaled


def sample_photo():
  """The bundled sample photo, as a PIL image (scikit-image is imported only when it is needed)."""
  from skimage import data  # pylint: disable=import-outside-toplevel
  return Image.fromarray(getattr(data, SAMPLE_PHOTO)())


def upscale_files(upscaler, input_spec, output_dir):
  """Upscales every image named by `input_spec` (or the sample photo) into output_dir/<name>_x<r>.png."""
  if input_spec:
    named_images = ((path, lambda path=path: utils.load_image(path))
                    for path in utils.list_images(input_spec))
  else:
    named_images = [(SAMPLE_PHOTO, sample_photo)]
  for name, load in named_images:
    stem = os.path.splitext(os.path.basename(name))[0]
    output = os.path.join(output_dir, f'{stem}_x{upscaler.scale}.png')
    utils.save_png(upscale_image(upscaler, load()), output)
    print(f'{name} -> {output}')


# ---------------------------------------------------------------------------------------------------------
# Evaluation against ground truth
# ---------------------------------------------------------------------------------------------------------

def evaluate_image(upscaler, path, output_dir):
  """Scores one ground-truth image and saves its LR, bicubic, ESPCN and HR versions."""
  lr_image, hr_image = utils.make_lr_hr(utils.load_image(path), upscaler.scale)
  if min(lr_image.size) < 8:
    raise utils.InputError(f'{path}: image is too small to evaluate at x{upscaler.scale}')
  hr = np.asarray(hr_image)
  bicubic = np.asarray(utils.bicubic_resize(lr_image, hr_image.size))
  sr = upscaler.upscale(np.asarray(lr_image))
  stem = os.path.splitext(os.path.basename(path))[0]
  for suffix, picture in (('lr', np.asarray(lr_image)), ('bicubic', bicubic), ('espcn', sr), ('hr', hr)):
    utils.save_png(picture, os.path.join(output_dir, f'{stem}_{suffix}.png'))
  border = upscaler.scale
  return {'name': stem,
          'psnr_y': utils.psnr_y(hr, sr, border), 'ssim_y': utils.ssim_y(hr, sr, border),
          'bicubic_psnr_y': utils.psnr_y(hr, bicubic, border),
          'bicubic_ssim_y': utils.ssim_y(hr, bicubic, border)}


def format_table(rows, mean):
  """Per-image and mean scores as a Markdown table."""
  lines = ['| image | bicubic PSNR | bicubic SSIM | ESPCN PSNR | ESPCN SSIM |', '|---|---|---|---|---|']
  for name, scores in [(row['name'], row) for row in rows] + [('**mean**', mean)]:
    lines.append(f'| {name} | {scores["bicubic_psnr_y"]:.2f} | {scores["bicubic_ssim_y"]:.4f} '
                 f'| {scores["psnr_y"]:.2f} | {scores["ssim_y"]:.4f} |')
  return '\n'.join(lines)


def evaluate(upscaler, eval_dir, output_dir):
  """Scores every image of `eval_dir`; returns the JSON report."""
  rows = [evaluate_image(upscaler, path, output_dir)
          for path in tqdm(utils.list_images(eval_dir), desc='evaluating', unit='image', leave=False)]
  mean = {key: float(np.mean([row[key] for row in rows]))
          for key in ('psnr_y', 'ssim_y', 'bicubic_psnr_y', 'bicubic_ssim_y')}
  return {'scale': upscaler.scale, 'channels': upscaler.channels, 'checkpoint': upscaler.checkpoint,
          'images': rows, 'mean': mean}


@utils.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  if FLAGS.eval_dir and not os.path.isdir(FLAGS.eval_dir):
    raise utils.InputError(f'{FLAGS.eval_dir}: no such folder')
  utils.ensure_writable_dir(FLAGS.output_dir)
  checkpoint_dir = FLAGS.checkpoint_dir or shipped_checkpoint_dir(FLAGS.channels, FLAGS.scale)
  upscaler = espcn.Upscaler.from_checkpoint(checkpoint_dir, FLAGS.scale, FLAGS.channels, FLAGS.tile)
  print(f'checkpoint: {upscaler.checkpoint}')
  if not FLAGS.eval_dir:
    upscale_files(upscaler, FLAGS.input, FLAGS.output_dir)
    return
  report = evaluate(upscaler, FLAGS.eval_dir, FLAGS.output_dir)
  print(format_table(report['images'], report['mean']))
  if FLAGS.json:
    utils.ensure_writable_dir(os.path.dirname(os.path.abspath(FLAGS.json)))
    utils.write_json(report, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
