"""The shipped models load by default and are real: each beats bicubic by at least 1 dB on a sample photo.

The photo is scikit-image's astronaut (inside its wheel), so no shared data is needed: a broken checkpoint,
a wrong channel order or a loader that silently falls back to random weights cannot land.
"""
import os

import numpy as np
import pytest
from PIL import Image
from skimage import data

from superres import checkpoints
from superres import inference
from superres import metrics
from superres import pairs


def sample_photo_psnr(channels, scale, precision='float32'):
  """Y-PSNR of a shipped model on the sample photo, and of bicubic."""
  upscaler = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir(channels, scale), scale, channels,
                                            precision=precision)
  lr_image, hr_image = pairs.make_lr_hr(Image.fromarray(data.astronaut()), scale)
  espcn_psnr = metrics.psnr_y(np.asarray(hr_image), upscaler.upscale(np.asarray(lr_image)), scale)
  bicubic_psnr = metrics.psnr_y(np.asarray(hr_image),
                              np.asarray(pairs.bicubic_resize(lr_image, hr_image.size)), scale)
  upscaler.session.close()
  return espcn_psnr, bicubic_psnr


@pytest.mark.parametrize('channels,scale', checkpoints.SHIPPED_MODELS)
def test_shipped_model_beats_bicubic_on_the_sample_photo(channels, scale):
  checkpoint_dir = checkpoints.shipped_model_dir(channels, scale)
  assert os.path.exists(os.path.join(checkpoint_dir, checkpoints.CARD_FILE)), 'every shipped model has a card'
  espcn_psnr, bicubic_psnr = sample_photo_psnr(channels, scale)
  assert espcn_psnr >= bicubic_psnr + 1.0, (espcn_psnr, bicubic_psnr)


@pytest.mark.parametrize('channels,scale', [('y', 3), ('rgb', 3)])
def test_bfloat16_costs_the_shipped_x3_models_less_than_0_02_db(channels, scale):
  exact, _ = sample_photo_psnr(channels, scale)
  reduced, _ = sample_photo_psnr(channels, scale, precision='bfloat16')
  assert abs(reduced - exact) < 0.02, (exact, reduced)


def test_every_shipped_model_folder_is_tested():
  shipped = sorted(name for name in os.listdir(checkpoints.SHIPPED_ROOT) if name.startswith('espcn_'))
  assert shipped == sorted([f'espcn_{channels}_x{scale}' for channels, scale in checkpoints.SHIPPED_MODELS]
                           + [os.path.basename(checkpoints.PHOTO_MODEL_DIR)])


def test_the_photo_model_beats_the_clean_one_on_a_jpeg_and_stays_close_on_a_clean_photo():
  """checkpoint/espcn_y_x3_jpeg is what README recommends for JPEGs: on the sample photo saved as JPEG at
  quality 75 it must beat the clean y x3 model, and on the clean photo stay within 0.3 dB of it."""
  lr_image, hr_image = pairs.make_lr_hr(Image.fromarray(data.astronaut()), 3)
  jpeg_lr = np.asarray(pairs.jpeg_round_trip(lr_image, 75))
  scores = {}
  for model_dir in (checkpoints.shipped_model_dir('y', 3), checkpoints.PHOTO_MODEL_DIR):
    upscaler = inference.Upscaler.from_checkpoint(model_dir, 3, 'y')
    scores[model_dir] = [metrics.psnr_y(np.asarray(hr_image), upscaler.upscale(lr), 3)
                         for lr in (np.asarray(lr_image), jpeg_lr)]
    upscaler.session.close()
  (clean_on_clean, clean_on_jpeg), (photo_on_clean, photo_on_jpeg) = scores.values()
  assert photo_on_jpeg > clean_on_jpeg + 0.2, scores
  assert photo_on_clean > clean_on_clean - 0.3, scores
