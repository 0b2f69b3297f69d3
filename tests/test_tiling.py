"""Tiles and bands: an image processed in overlapping pieces equals the same image in one pass.

Exactly on the small test images; on large ones up to float32 rounding, since TensorFlow's convolution
kernels may sum in another order for another shape (a rare 8-bit value moves by one level).
"""
import numpy as np
import pytest

import espcn
import generate
import utils
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


def test_bands_of_one_batch_give_the_network_output_of_one_pass(upscaler):
  """network() runs an image as a batch of horizontal bands (one per core) with margins: the same values
  as one pass, up to float32 rounding (the convolution kernels may sum in another order for another shape)."""
  model = upscaler(3, 'y')
  lr_array = model.network_input(smooth_rgb(97, 45))
  one_pass = model.session.run(model.sr_images, {model.lr_images: lr_array[None]})[0]
  for workers in (2, 3):
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(utils, 'WORKERS', workers)
      np.testing.assert_allclose(model.network(lr_array), one_pass, rtol=0, atol=1e-5)


@pytest.mark.parametrize('channels', ['y', 'rgb'])
def test_tiles_change_almost_no_pixel_of_a_shipped_model_on_a_frame(channels):
  """On a real model and frame, the float32 rounding differences between tile shapes move a rare value
  across a rounding boundary of the 8-bit output, by one level, if at all."""
  model = espcn.Upscaler.from_checkpoint(generate.shipped_checkpoint_dir(channels, 3), 3, channels)
  frame = np.asarray(utils.bicubic_resize(generate.sample_photo(), (320, 180)))
  one_pass = model.upscale(frame).astype(int)
  for tile in (100, 64):
    model.tile = tile
    difference = np.abs(model.upscale(frame) - one_pass)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-5
  model.session.close()
