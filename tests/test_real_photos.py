"""Real photos: every image read is turned upright by its EXIF orientation, and an upscaled photo keeps its
ICC colour profile and carries no orientation tag (issue 20, item 4).

A camera stores a portrait photo as landscape pixels plus an orientation tag that tells viewers to turn it.
The references here turn the stored pixels with NumPy, apart from Pillow's ImageOps.exif_transpose, which
image_files.load_image uses: a tag read the wrong way round gives other pixels than these.
"""
import io

import h5py
import numpy as np
import pytest
from PIL import Image
from PIL import ImageCms

from superres import evaluation
from superres import image_files
from superres import inference
from superres import pairs
from superres import patches
from conftest import smooth_rgb

ORIENTATION = 0x0112
STORED_WIDTH, STORED_HEIGHT = 40, 28  # landscape as stored; upright, a quarter turn makes it 28 x 40
# EXIF orientation -> what a viewer does to the stored pixels [H, W, C] to show them upright (EXIF 2.3,
# tag 274: 6 means the stored top row is the picture's right side, so the pixels turn a quarter clockwise).
UPRIGHT = {2: np.fliplr, 3: lambda pixels: np.rot90(pixels, 2), 4: np.flipud,
           5: lambda pixels: pixels.transpose(1, 0, 2), 6: lambda pixels: np.rot90(pixels, -1),
           7: lambda pixels: np.rot90(pixels.transpose(1, 0, 2), 2), 8: lambda pixels: np.rot90(pixels, 1)}


def srgb_profile():
  return ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()


def save_tagged_jpeg(path, orientation, icc_profile=None, seed=0):
  """A JPEG of landscape pixels with an EXIF orientation tag (and an ICC profile), as a camera writes it;
  returns the pixels as stored, decoded without turning."""
  exif = Image.Exif()
  exif[ORIENTATION] = orientation
  options = {'icc_profile': icc_profile} if icc_profile else {}
  Image.fromarray(smooth_rgb(STORED_HEIGHT, STORED_WIDTH, seed)).save(path, quality=95, exif=exif, **options)
  with Image.open(path) as stored:
    return np.asarray(stored)


def tagged_and_turned_by_hand(folder, name='photo'):
  """folder/tagged/<name>.jpg with orientation 6, and folder/by_hand/<name>.png: its decoded pixels turned
  upright with NumPy and stored without a tag (PNG, lossless). Returns the two folders."""
  tagged, by_hand = folder / 'tagged', folder / 'by_hand'
  tagged.mkdir()
  by_hand.mkdir()
  stored = save_tagged_jpeg(tagged / f'{name}.jpg', 6)
  Image.fromarray(UPRIGHT[6](stored)).save(by_hand / f'{name}.png')
  return tagged, by_hand


@pytest.mark.parametrize('orientation', sorted(UPRIGHT))
def test_load_image_turns_the_pixels_as_the_orientation_tag_says_and_drops_the_tag(tmp_path, orientation):
  stored = save_tagged_jpeg(tmp_path / 'photo.jpg', orientation)
  loaded = image_files.load_image(str(tmp_path / 'photo.jpg'))
  np.testing.assert_array_equal(np.asarray(loaded), UPRIGHT[orientation](stored))
  assert ORIENTATION not in loaded.getexif()


def test_an_untagged_image_is_read_as_stored(tmp_path):
  """Orientation 1 (upright) and no tag at all: the pixels as decoded."""
  stored = save_tagged_jpeg(tmp_path / 'upright.jpg', 1)
  np.testing.assert_array_equal(np.asarray(image_files.load_image(str(tmp_path / 'upright.jpg'))), stored)
  Image.fromarray(stored).save(tmp_path / 'plain.png')
  np.testing.assert_array_equal(np.asarray(image_files.load_image(str(tmp_path / 'plain.png'))), stored)


def test_a_portrait_photo_is_upscaled_upright_with_its_icc_profile_and_no_orientation_tag(
    tmp_path, main_in_process, tiny_checkpoint, upscaler):
  """generate.py on a camera's JPEG (orientation 6, an sRGB profile): a portrait r times the upright size,
  the network's upscaling of the upright pixels, the profile Pillow reads back unchanged, and no EXIF."""
  profile = srgb_profile()
  photo = tmp_path / 'portrait.jpg'
  stored = save_tagged_jpeg(photo, 6, icc_profile=profile)
  output_dir = tmp_path / 'out'
  main_in_process('generate', f'--input={photo}', f'--output_dir={output_dir}', '--scale=3', '--channels=rgb',
                  f'--checkpoint_dir={tiny_checkpoint(3, "rgb")}')
  with Image.open(output_dir / 'portrait_x3.png') as upscaled:
    assert upscaled.size == (3 * STORED_HEIGHT, 3 * STORED_WIDTH)  # portrait: width < height
    assert upscaled.info.get('icc_profile') == profile
    assert 'exif' not in upscaled.info and ORIENTATION not in upscaled.getexif()
    pixels = np.asarray(upscaled)
  turned_by_hand = Image.fromarray(np.ascontiguousarray(UPRIGHT[6](stored)))
  np.testing.assert_array_equal(pixels, inference.upscale_image(upscaler(3, 'rgb'), turned_by_hand))


def png_chunks(data):
  """The chunk types of a PNG file, in order."""
  kinds, offset = [], 8
  while offset < len(data):
    length = int.from_bytes(data[offset:offset + 4], 'big')
    kinds.append(data[offset + 4:offset + 8])
    offset += 12 + length
  return kinds


@pytest.mark.parametrize('channels,colour_space,kept', [
    (3, b'RGB ', True), (4, b'RGB ', True), (1, b'GRAY', True), (2, b'GRAY', True),
    (1, b'RGB ', False),  # a gray output (L) of an image that had an RGB profile
    (3, b'CMYK', False)])  # a CMYK photo, converted to RGB by Pillow: its profile describes other numbers
def test_write_png_keeps_a_profile_only_of_the_pixels_colour_space(channels, colour_space, kept):
  """PNG allows an iCCP profile only of its colour type's space; one that fits comes back byte for byte,
  before the pixels, and one that does not is left out, the pixels written as without a profile."""
  profile = bytearray(srgb_profile())
  profile[16:20] = colour_space  # the header's data colour space (Pillow reads the bytes back unchecked)
  rgb = smooth_rgb(9, 11)
  colour = rgb if channels >= 3 else rgb[..., 0]
  pixels = np.dstack([colour, rgb[..., 1]]) if channels in (2, 4) else colour  # (2, 4: with alpha)
  with_profile, without = io.BytesIO(), io.BytesIO()
  image_files.write_png(pixels, with_profile, bytes(profile))
  image_files.write_png(pixels, without)
  with Image.open(io.BytesIO(with_profile.getvalue())) as image:
    np.testing.assert_array_equal(np.asarray(image), pixels)
    assert image.info.get('icc_profile') == (bytes(profile) if kept else None)
  assert b'iCCP' not in png_chunks(without.getvalue())
  if kept:
    kinds = png_chunks(with_profile.getvalue())
    assert kinds.index(b'iCCP') < kinds.index(b'IDAT')
  else:
    assert with_profile.getvalue() == without.getvalue()


def test_evaluation_and_validation_of_a_tagged_photo_equal_those_of_the_photo_turned_by_hand(
    tmp_path, upscaler):
  tagged, by_hand = tagged_and_turned_by_hand(tmp_path)
  model = upscaler(3, 'rgb')
  for tagged_pair, by_hand_pair in zip(pairs.ground_truth_pair(str(tagged / 'photo.jpg'), 3),
                                       pairs.ground_truth_pair(str(by_hand / 'photo.png'), 3)):
    assert tagged_pair.size == by_hand_pair.size and tagged_pair.height > tagged_pair.width
    np.testing.assert_array_equal(np.asarray(tagged_pair), np.asarray(by_hand_pair))
  for (tagged_lr, tagged_hr), (by_hand_lr, by_hand_hr) in zip(evaluation.validation_pairs(str(tagged), 3),
                                                              evaluation.validation_pairs(str(by_hand), 3)):
    np.testing.assert_array_equal(tagged_lr, by_hand_lr)
    np.testing.assert_array_equal(tagged_hr, by_hand_hr)
  reports = []
  for folder in (tagged, by_hand):
    (tmp_path / f'{folder.name}_out').mkdir()
    reports.append(evaluation.evaluate(model, str(folder), str(tmp_path / f'{folder.name}_out')))
  assert reports[0]['images'] == reports[1]['images']
  for suffix in ('lr', 'bicubic', 'espcn', 'hr'):
    assert ((tmp_path / 'tagged_out' / f'photo_{suffix}.png').read_bytes()
            == (tmp_path / 'by_hand_out' / f'photo_{suffix}.png').read_bytes())


@pytest.mark.parametrize('channels', ['rgb', 'y'])
def test_patches_of_a_tagged_photo_equal_those_of_the_photo_turned_by_hand(tmp_path, channels):
  tagged, by_hand = tagged_and_turned_by_hand(tmp_path)
  data = {}
  for folder in (tagged, by_hand):
    data[folder.name] = tmp_path / f'{folder.name}.h5'
    patches.prepare(str(folder), str(data[folder.name]), 3, channels, 5, 4, downscales=(1.0, 0.8))
  with h5py.File(data['tagged'], 'r') as from_tagged, h5py.File(data['by_hand'], 'r') as from_by_hand:
    # upright 28 x 40: LR 9 x 13 at x3, 2 x 3 patches of 5 every 4; at 0.8, 22 x 32: LR 7 x 10, 1 x 2
    assert len(from_tagged['input']) == 8
    for name in ('input', 'label'):
      np.testing.assert_array_equal(from_tagged[name][:], from_by_hand[name][:])
