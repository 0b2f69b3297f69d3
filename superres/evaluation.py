"""Scoring a model against ground truth: generate.py --eval_dir, train.py's validation, the results table.

The protocol of the SR literature: each ground-truth image is cropped to a multiple of r and shrunk with
bicubic (pairs.ground_truth_pair); the result is scored on Y with a border of r pixels (metrics.psnr_y,
metrics.ssim_y), on the 8-bit images that are written, i.e. what a user gets.
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


def evaluate_image(upscaler, path, output_dir):
  """Scores one ground-truth image and saves its LR, bicubic, ESPCN and HR versions."""
  lr_image, hr_image = pairs.ground_truth_pair(path, upscaler.scale)
  hr = np.asarray(hr_image)
  bicubic = bicubic_upscale(np.asarray(lr_image), hr.shape)
  sr = upscaler.upscale(np.asarray(lr_image))
  stem = files.output_stem(path)
  for suffix, picture in (('lr', np.asarray(lr_image)), ('bicubic', bicubic), ('espcn', sr), ('hr', hr)):
    image_files.save_png(picture, os.path.join(output_dir, f'{stem}_{suffix}.png'))
  border = upscaler.scale
  return {'name': stem,
          'psnr_y': metrics.psnr_y(hr, sr, border), 'ssim_y': metrics.ssim_y(hr, sr, border),
          'bicubic_psnr_y': metrics.psnr_y(hr, bicubic, border),
          'bicubic_ssim_y': metrics.ssim_y(hr, bicubic, border)}


def evaluate(upscaler, eval_dir, output_dir):
  """Scores every image of `eval_dir`; returns the JSON report."""
  # disable=None: no bar unless stderr is a terminal, where `with` clears it before an error is printed.
  with tqdm(files.list_images(eval_dir), desc='evaluating', unit='image', leave=False, disable=None) as paths:
    rows = [evaluate_image(upscaler, path, output_dir) for path in paths]
  mean = {key: float(np.mean([row[key] for row in rows]))
          for key in ('psnr_y', 'ssim_y', 'bicubic_psnr_y', 'bicubic_ssim_y')}
  return {'scale': upscaler.scale, 'channels': upscaler.channels, 'checkpoint': upscaler.checkpoint,
          'images': rows, 'mean': mean}


def format_table(rows, mean):
  """Per-image and mean scores as a Markdown table."""
  lines = ['| image | bicubic PSNR | bicubic SSIM | ESPCN PSNR | ESPCN SSIM |', '|---|---|---|---|---|']
  for name, scores in [(row['name'], row) for row in rows] + [('**mean**', mean)]:
    lines.append(f'| {name} | {scores["bicubic_psnr_y"]:.2f} | {scores["bicubic_ssim_y"]:.4f} '
                 f'| {scores["psnr_y"]:.2f} | {scores["ssim_y"]:.4f} |')
  return '\n'.join(lines)


def validation_pairs(val_dir, scale):
  """The validation images as (LR, HR) uint8 arrays, made exactly as the evaluation makes them."""
  paths = files.list_images(val_dir)
  for path in paths:
    if os.path.basename(os.path.dirname(os.path.abspath(path))).lower() in TEST_SETS:
      raise files.InputError(f'{path}: Set5 and Set14 are test sets; validate on other images '
                             f'(e.g. ../shared/data/General100)')
  images = [pairs.ground_truth_pair(path, scale) for path in paths]
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
