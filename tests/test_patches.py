"""LR and HR patches must cover the same part of the picture, or the network learns a shifted mapping."""
import numpy as np
import pytest
from PIL import Image

from superres import pairs

PATCH_SIZE = 8
STRIDE = 4


def test_patch_pairs_are_cut_at_the_stride_grid_and_scaled_corners():
  """Each LR patch is lr[top:top+p, left:left+p] on the stride grid (row by row), and its HR partner is
  exactly hr[r*top : r*(top+p), r*left : r*(left+p)]."""
  scale, patch_size, stride = 3, 5, 3
  rng = np.random.default_rng(0)
  lr = rng.integers(0, 256, (14, 19, 3), dtype=np.uint8)  # H != W, not a multiple of the stride
  hr = rng.integers(0, 256, (14 * scale, 19 * scale, 3), dtype=np.uint8)
  lr_patches, hr_patches = pairs.extract_patch_pairs(lr, hr, patch_size, stride, scale)
  corners = [(top, left) for top in (0, 3, 6, 9) for left in (0, 3, 6, 9, 12)]
  assert lr_patches.shape == (len(corners), patch_size, patch_size, 3)
  assert hr_patches.shape == (len(corners), scale * patch_size, scale * patch_size, 3)
  for index, (top, left) in enumerate(corners):
    np.testing.assert_array_equal(lr_patches[index], lr[top:top + patch_size, left:left + patch_size])
    np.testing.assert_array_equal(
        hr_patches[index],
        hr[scale * top:scale * (top + patch_size), scale * left:scale * (left + patch_size)])


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_block_average_of_each_hr_patch_is_its_lr_patch(scale):
  """With HR made by repeating every LR pixel r x r times, averaging each HR patch over r x r cells must
  give back its LR patch exactly: a content check of alignment that does not rely on index arithmetic."""
  rng = np.random.default_rng(scale)
  lr = rng.integers(0, 256, (13, 17, 1), dtype=np.uint8)
  hr = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
  lr_patches, hr_patches = pairs.extract_patch_pairs(lr, hr, PATCH_SIZE, STRIDE, scale)
  cells = hr_patches.reshape(len(hr_patches), PATCH_SIZE, scale, PATCH_SIZE, scale, 1).astype(np.float64)
  np.testing.assert_array_equal(cells.mean(axis=(2, 4)), lr_patches)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_downscale_of_each_hr_patch_matches_its_lr_patch_away_from_the_border(scale, make_image):
  """On the real pipeline (make_lr_hr on a smooth image), shrinking each HR patch by r with bicubic must
  reproduce its LR patch wherever the bicubic kernel stays inside the patch (2 LR pixels in). The same
  check on HR windows moved by one HR pixel must fail clearly, which shows it can detect a misalignment."""
  lr_image, hr_image = pairs.make_lr_hr(make_image(75, 90, seed=scale), scale)
  lr, hr = np.asarray(lr_image), np.asarray(hr_image)
  lr_patches, hr_patches = pairs.extract_patch_pairs(lr, hr, PATCH_SIZE, STRIDE, scale)
  corners = [(top, left) for top in range(0, lr.shape[0] - PATCH_SIZE + 1, STRIDE)
             for left in range(0, lr.shape[1] - PATCH_SIZE + 1, STRIDE)]
  assert len(lr_patches) == len(corners) > 5

  def shrink(hr_patch):
    return np.asarray(Image.fromarray(hr_patch).resize((PATCH_SIZE, PATCH_SIZE), Image.BICUBIC), np.float64)

  def interior_error(hr_patch, lr_patch):
    return np.abs(shrink(hr_patch) - lr_patch)[2:-2, 2:-2].max()

  aligned_errors = [interior_error(hr_patch, lr_patch) for lr_patch, hr_patch in zip(lr_patches, hr_patches)]
  assert max(aligned_errors) <= 1.0

  hr_side = PATCH_SIZE * scale
  shifted_errors = [interior_error(hr[scale * top + 1:scale * top + 1 + hr_side,
                                      scale * left + 1:scale * left + 1 + hr_side], lr_patch)
                    for (top, left), lr_patch in zip(corners, lr_patches)
                    if scale * top + 1 + hr_side <= hr.shape[0] and scale * left + 1 + hr_side <= hr.shape[1]]
  assert shifted_errors and np.median(shifted_errors) > 3.0, shifted_errors
