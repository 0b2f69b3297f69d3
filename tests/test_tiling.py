"""Tiles: an image processed in overlapping pieces equals the same image in one pass, to the bit.

Not a matter of course: with the weights in variables TensorFlow's oneDNN convolutions sum in another
order for another shape, and a compiled (fused) pass rounds a multiply-add once where an unfused one rounds
twice; either moved a rare 8-bit value by one level (inference.Upscaler.freeze, inference.reconstruction_graph).
"""
import numpy as np
import pytest

from superres import checkpoints
from superres import image_files
from superres import inference
from superres import pairs
from conftest import smooth_rgb


def test_tiles_cover_the_image_once():
  covered = np.zeros((23, 30), int)
  for top, left, bottom, right in inference.tiles(23, 30, 8):
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
    model.tile = inference.DEFAULT_TILE


@pytest.mark.parametrize('channels', ['y', 'rgb'])
def test_tiles_change_no_pixel_of_a_shipped_model_on_a_frame(channels):
  """On a real model and a real frame, where the two slips above moved up to 34 bytes and one to three bytes
  ('y') per tile shape, tiles give the bytes of one pass."""
  model = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir(channels, 3), 3, channels)
  frame = np.asarray(pairs.bicubic_resize(image_files.sample_photo(), (320, 180)))
  one_pass = model.upscale(frame)
  for tile in (100, 64):
    model.tile = tile
    np.testing.assert_array_equal(model.upscale(frame), one_pass)
  model.session.close()
