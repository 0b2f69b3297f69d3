"""Tiles: an image processed in small overlapping tiles equals the same image in one pass, exactly."""
import numpy as np
import pytest

import espcn
from conftest import smooth_rgb


def test_tiles_cover_the_image_once():
  covered = np.zeros((23, 30), int)
  for top, left, bottom, right in espcn.tiles(23, 30, 8):
    assert bottom - top <= 8 and right - left <= 8
    covered[top:bottom, left:right] += 1
  assert (covered == 1).all()


@pytest.mark.parametrize('scale,channels', [(2, 'rgb'), (3, 'y'), (4, 'y')])
@pytest.mark.parametrize('gray', [False, True])
def test_tiled_output_equals_one_pass(upscaler, scale, channels, gray):
  model = upscaler(scale, channels)
  image = smooth_rgb(37, 29, seed=scale)
  image = image.mean(axis=2).astype(np.uint8) if gray else image
  model.tile = 1000
  one_pass = model.upscale(image)
  try:
    for tile in (5, 12):  # tiles smaller and larger than the margin, most not dividing the image
      model.tile = tile
      np.testing.assert_array_equal(model.upscale(image), one_pass)
  finally:
    model.tile = espcn.DEFAULT_TILE
