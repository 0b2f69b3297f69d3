"""Scoring a model against ground truth: generate.py --eval_dir, train.py's validation, the results table.

The protocol of the SR literature: each ground-truth image is cropped to a multiple of r and shrunk with
bicubic (pairs.ground_truth_pair); the result is scored on Y with a border of r pixels (metrics.psnr_y,
metrics.ssim_y), on the 8-bit images that are written, i.e. what a user gets. With a JPEG quality
(--eval_jpeg_quality, --val_jpeg_quality), the LR image is then saved as a JPEG and decoded before it is
upscaled (pairs.jpeg_round_trip), as photos arrive; the bicubic baseline upscales the same decoded image.
"""
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from superres import files
from superres import image_files
from superres import metrics
from superres import pairs

TEST_SETS = ('set5', 'set14')  # never validated on (folder names, any case)


def evaluation_pair(path, scale, jpeg_quality=0):
  """The (LR, HR) pair of a ground-truth image, its LR image JPEG-compressed at `jpeg_quality` (0: clean)."""
  lr_image, hr_image = pairs.ground_truth_pair(path, scale)
  if jpeg_quality:
    lr_image = pairs.jpeg_round_trip(lr_image, jpeg_quality)
  return lr_image, hr_image


def evaluate_image(upscaler, path, output_dir, jpeg_quality=0):
  """Scores one ground-truth image and saves its LR (as upscaled), bicubic, ESPCN and HR versions into
  `output_dir` (None: scores only)."""
  lr_image, hr_image = evaluation_pair(path, upscaler.scale, jpeg_quality)
  hr = np.asarray(hr_image)
  bicubic = bicubic_upscale(np.asarray(lr_image), hr.shape)
  sr = upscaler.upscale(np.asarray(lr_image))
  stem = files.output_stem(path)
  if output_dir is not None:
    for suffix, picture in (('lr', np.asarray(lr_image)), ('bicubic', bicubic), ('espcn', sr), ('hr', hr)):
      image_files.save_png(picture, os.path.join(output_dir, f'{stem}_{suffix}.png'))
  border = upscaler.scale
  return {'name': stem,
          'psnr_y': metrics.psnr_y(hr, sr, border), 'ssim_y': metrics.ssim_y(hr, sr, border),
          'bicubic_psnr_y': metrics.psnr_y(hr, bicubic, border),
          'bicubic_ssim_y': metrics.ssim_y(hr, bicubic, border)}


def evaluate(upscaler, eval_dir, output_dir, jpeg_quality=0):
  """Scores every image of `eval_dir` (LR compressed at `jpeg_quality`, 0: clean); returns the JSON report,
  which records a quality other than 0 as 'eval_jpeg_quality' (a clean report is as it always was)."""
  # disable=None: no bar unless stderr is a terminal, where `with` clears it before an error is printed.
  with tqdm(files.list_images(eval_dir), desc='evaluating', unit='image', leave=False, disable=None) as paths:
    rows = [evaluate_image(upscaler, path, output_dir, jpeg_quality) for path in paths]
  mean = {key: float(np.mean([row[key] for row in rows]))
          for key in ('psnr_y', 'ssim_y', 'bicubic_psnr_y', 'bicubic_ssim_y')}
  compression = {'eval_jpeg_quality': jpeg_quality} if jpeg_quality else {}
  return {'scale': upscaler.scale, 'channels': upscaler.channels, 'checkpoint': upscaler.checkpoint,
          **compression, 'images': rows, 'mean': mean}


def format_table(rows, mean):
  """Per-image and mean scores as a Markdown table."""
  lines = ['| image | bicubic PSNR | bicubic SSIM | ESPCN PSNR | ESPCN SSIM |', '|---|---|---|---|---|']
  for name, scores in [(row['name'], row) for row in rows] + [('**mean**', mean)]:
    lines.append(f'| {name} | {scores["bicubic_psnr_y"]:.2f} | {scores["bicubic_ssim_y"]:.4f} '
                 f'| {scores["psnr_y"]:.2f} | {scores["ssim_y"]:.4f} |')
  return '\n'.join(lines)


def validation_qualities(values):
  """--val_jpeg_quality as the JPEG qualities of the validation LR (0: clean); none given: clean only."""
  return pairs.parse_jpeg_qualities(values, 'val_jpeg_quality', lowest=0) if values else [0]


def validation_pairs(val_dir, scale, jpeg_qualities=(0,)):
  """The validation images as (LR, HR) uint8 arrays, made exactly as the evaluation makes them: every image
  at each of `jpeg_qualities` (0: clean), so that their mean PSNR is the mean over the qualities."""
  paths = files.list_images(val_dir)
  for path in paths:
    if os.path.basename(os.path.dirname(os.path.abspath(path))).lower() in TEST_SETS:
      raise files.InputError(f'{path}: Set5 and Set14 are test sets; validate on other images '
                             f'(e.g. data/General100)')
  images = [evaluation_pair(path, scale, quality) for quality in jpeg_qualities for path in paths]
  return [(np.asarray(lr_image), np.asarray(hr_image)) for lr_image, hr_image in images]


def bicubic_upscale(lr, hr_shape):
  """The bicubic baseline of an LR array at the size of its HR image (as evaluate_image makes it)."""
  return np.asarray(pairs.bicubic_resize(Image.fromarray(lr), (hr_shape[1], hr_shape[0])))


def bicubic_psnr(pairs, scale):
  """Mean Y-PSNR of bicubic upscaling on (LR, HR) pairs: the line a model has to clear."""
  return float(np.mean([metrics.psnr_y(hr, bicubic_upscale(lr, hr.shape), scale) for lr, hr in pairs]))


def mean_psnr(upscaler, pairs):
  """Mean Y-PSNR of the upscaler on (LR, HR) pairs: the 'psnr_y' mean that evaluate reports."""
  return float(np.mean([metrics.psnr_y(hr, upscaler.upscale(lr), upscaler.scale) for lr, hr in pairs]))
