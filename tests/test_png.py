"""The PNG writer: every colour layout and block split decodes, through Pillow, to the pixels written."""
import io

import numpy as np
import pytest
from PIL import Image

from superres import image_files
from conftest import smooth_rgb


def decoded(pixels):
  stream = io.BytesIO()
  image_files.write_png(pixels, stream)
  stream.seek(0)
  with Image.open(stream) as image:
    image.verify()  # chunk CRCs and the end of the stream
  stream.seek(0)
  with Image.open(stream) as image:
    return image.mode, np.asarray(image)


@pytest.mark.parametrize('channels,mode', [(None, 'L'), (1, 'L'), (2, 'LA'), (3, 'RGB'), (4, 'RGBA')])
def test_every_layout_round_trips(channels, mode):
  rgb = smooth_rgb(31, 45, seed=channels or 0)
  if channels is None:
    pixels = rgb[..., 0]
  else:
    pixels = np.concatenate([rgb, rgb[..., :1]], axis=2)[..., :channels]
  got_mode, got = decoded(pixels)
  assert got_mode == mode
  np.testing.assert_array_equal(got, pixels.reshape(got.shape))


@pytest.mark.parametrize('block_bytes', [1, 100, 1 << 22])
@pytest.mark.parametrize('height,width', [(1, 1), (1, 17), (29, 1), (40, 33)])
def test_any_split_into_blocks_round_trips(monkeypatch, block_bytes, height, width):
  """Blocks of one row each, of a few rows, and one block: the joined deflate streams decode the same."""
  monkeypatch.setattr(image_files, 'PNG_BLOCK_BYTES', block_bytes)
  pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
  np.testing.assert_array_equal(decoded(pixels)[1], pixels)


def test_save_png_takes_pil_images(tmp_path):
  image = Image.fromarray(smooth_rgb(12, 20)).convert('RGBA')
  image_files.save_png(image, tmp_path / 'out.png')
  with Image.open(tmp_path / 'out.png') as saved:
    assert saved.mode == 'RGBA'
    np.testing.assert_array_equal(np.asarray(saved), np.asarray(image))
  assert [path.name for path in tmp_path.iterdir()] == ['out.png']


def test_refuses_pixels_that_are_not_bytes():
  with pytest.raises(ValueError, match='uint8'):
    image_files.write_png(np.zeros((4, 4, 3), np.float32), io.BytesIO())
