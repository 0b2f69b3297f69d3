"""The HDF5 patch file: its layout, its attributes, its patch count and its atomic replacement."""
import h5py
import numpy as np
import pytest

from superres import files
from superres import image_files
from superres import pairs
from superres import patches

SCALE, PATCH_SIZE, STRIDE = 3, 5, 4
IMAGE_SIZES = {'a.png': (50, 41), 'b.png': (38, 44)}  # width x height, neither a multiple of the scale


@pytest.fixture
def images_dir(tmp_path, make_image):
  folder = tmp_path / 'images'
  folder.mkdir()
  for index, (name, (width, height)) in enumerate(IMAGE_SIZES.items()):
    make_image(width, height, seed=index).save(folder / name)
  return folder


def read(path):
  with h5py.File(path, 'r') as data_file:
    return data_file['input'][:], data_file['label'][:], dict(data_file.attrs)


@pytest.mark.parametrize('channels,num_channels', [('rgb', 3), ('y', 1)])
def test_patch_file_holds_uint8_patches_of_the_right_shape_and_its_settings(
    tmp_path, images_dir, patch_count, channels, num_channels):
  """train.py relies on the dataset names, dtypes and attributes to refuse data made for another setting."""
  output = tmp_path / 'patches.h5'
  summary = patches.prepare(str(images_dir), str(output), SCALE, channels, PATCH_SIZE, STRIDE)
  expected_count = sum(patch_count(width, height, SCALE, PATCH_SIZE, STRIDE)
                       for width, height in IMAGE_SIZES.values())
  assert expected_count == 9 + 6  # 16x13 LR pixels: 3 x 3 corners; 12x14: 3 rows x 2 columns
  lr_patches, hr_patches, attributes = read(output)
  assert lr_patches.dtype == np.uint8 and hr_patches.dtype == np.uint8
  assert lr_patches.shape == (expected_count, PATCH_SIZE, PATCH_SIZE, num_channels)
  assert hr_patches.shape == (expected_count, SCALE * PATCH_SIZE, SCALE * PATCH_SIZE, num_channels)
  assert attributes == {'scale': SCALE, 'patch_size': PATCH_SIZE, 'stride': STRIDE, 'channels': channels,
                        'downscales': '1'}
  assert isinstance(attributes['channels'], str)
  assert summary.startswith(f'{output}: 2 images used, 0 skipped, {expected_count} patches')


def test_first_patches_are_the_top_left_corner_of_the_first_image(tmp_path, images_dir):
  """Images are read in name order and the pair comes from the evaluation protocol (modcrop + bicubic)."""
  output = tmp_path / 'patches.h5'
  patches.prepare(str(images_dir), str(output), SCALE, 'rgb', PATCH_SIZE, STRIDE)
  lr_patches, hr_patches, _ = read(output)
  lr_image, hr_image = pairs.make_lr_hr(image_files.load_image(str(images_dir / 'a.png')), SCALE)
  np.testing.assert_array_equal(lr_patches[0], np.asarray(lr_image)[:PATCH_SIZE, :PATCH_SIZE])
  np.testing.assert_array_equal(hr_patches[0], np.asarray(hr_image)[:SCALE * PATCH_SIZE, :SCALE * PATCH_SIZE])


def test_y_patches_are_the_rounded_luminance_of_the_rgb_patches(tmp_path, images_dir, reference_luminance):
  """The 'y' file must hold Y of the very same LR/HR pixels as the 'rgb' file (BT.601, studio range)."""
  patches.prepare(str(images_dir), str(tmp_path / 'rgb.h5'), SCALE, 'rgb', PATCH_SIZE, STRIDE)
  patches.prepare(str(images_dir), str(tmp_path / 'y.h5'), SCALE, 'y', PATCH_SIZE, STRIDE)
  rgb_lr, rgb_hr, _ = read(tmp_path / 'rgb.h5')
  y_lr, y_hr, _ = read(tmp_path / 'y.h5')
  assert np.abs(y_lr[..., 0] - reference_luminance(rgb_lr)).max() <= 0.5 + 1e-6
  assert np.abs(y_hr[..., 0] - reference_luminance(rgb_hr)).max() <= 0.5 + 1e-6


def test_rerun_replaces_the_file_completely_and_leaves_no_temporary_file(tmp_path, images_dir, make_image,
                                                                          patch_count):
  """A second run over an existing file must not append to it or keep its old attributes."""
  output = tmp_path / 'out' / 'patches.h5'
  patches.prepare(str(images_dir), str(output), SCALE, 'rgb', PATCH_SIZE, STRIDE)
  other_images = tmp_path / 'other'
  other_images.mkdir()
  make_image(40, 40, seed=7).save(other_images / 'only.png')
  patches.prepare(str(other_images), str(output), 2, 'y', PATCH_SIZE, stride=3)
  lr_patches, hr_patches, attributes = read(output)
  expected_count = patch_count(40, 40, 2, PATCH_SIZE, 3)
  assert lr_patches.shape == (expected_count, PATCH_SIZE, PATCH_SIZE, 1)
  assert hr_patches.shape == (expected_count, 2 * PATCH_SIZE, 2 * PATCH_SIZE, 1)
  assert attributes == {'scale': 2, 'patch_size': PATCH_SIZE, 'stride': 3, 'channels': 'y', 'downscales': '1'}
  assert sorted(path.name for path in output.parent.iterdir()) == ['patches.h5']


@pytest.mark.parametrize('mode', ['P', 'L', 'opaque RGBA', 'RGBA'])
def test_an_image_gives_the_same_patches_whatever_mode_it_is_stored_in(tmp_path, make_image, mode):
  """A palette, gray or RGBA PNG must give the same training pairs as the RGB picture that the network is
  shown of it (its HR patches): the LR image must be the bicubic downscale of exactly those RGB pixels.

  (Pillow resizes 'P' and '1' images with NEAREST whatever filter is asked for, and resizes RGBA with
  premultiplied alpha, so make_lr_hr has to convert the image before resizing it.)
  """
  picture = make_image(45, 42, mode=mode.split()[-1], seed=3)  # RGBA: alpha ramps from 0 to 255
  if mode == 'opaque RGBA':
    picture.putalpha(255)
  as_stored, as_rgb = tmp_path / 'stored', tmp_path / 'rgb'
  for folder, image in ((as_stored, picture), (as_rgb, picture.convert('RGB'))):
    folder.mkdir()
    image.save(folder / 'picture.png')
  assert image_files.load_image(str(as_stored / 'picture.png')).mode == picture.mode
  patches.prepare(str(as_stored), str(tmp_path / 'stored.h5'), SCALE, 'rgb', PATCH_SIZE, STRIDE)
  patches.prepare(str(as_rgb), str(tmp_path / 'rgb.h5'), SCALE, 'rgb', PATCH_SIZE, STRIDE)
  stored_lr, stored_hr, _ = read(tmp_path / 'stored.h5')
  rgb_lr, rgb_hr, _ = read(tmp_path / 'rgb.h5')
  np.testing.assert_array_equal(stored_hr, rgb_hr)
  np.testing.assert_array_equal(stored_lr, rgb_lr)


def test_downscales_add_the_patches_of_each_shrunk_copy_after_those_of_the_image(tmp_path, images_dir,
                                                                                 patch_count):
  """Scale augmentation: each factor adds the patches of the image shrunk by bicubic first; a copy too
  small for one patch adds none, without skipping the image."""
  output = tmp_path / 'patches.h5'
  downscales = (1.0, 0.5, 0.2)  # at 0.2 both images are under one 5x5 LR patch at x3
  summary = patches.prepare(str(images_dir), str(output), SCALE, 'rgb', PATCH_SIZE, STRIDE, downscales)
  lr_patches, hr_patches, attributes = read(output)
  assert attributes['downscales'] == '1,0.5,0.2'
  full_count = patch_count(*IMAGE_SIZES['a.png'], SCALE, PATCH_SIZE, STRIDE)
  half_count = patch_count(25, 20, SCALE, PATCH_SIZE, STRIDE)  # 50x41 shrunk by 0.5, rounded
  half_image = pairs.shrink(image_files.load_image(str(images_dir / 'a.png')), 0.5)
  assert half_image.size == (25, 20)
  lr_image, hr_image = pairs.make_lr_hr(half_image, SCALE)
  np.testing.assert_array_equal(lr_patches[full_count], np.asarray(lr_image)[:PATCH_SIZE, :PATCH_SIZE])
  np.testing.assert_array_equal(hr_patches[full_count],
                                np.asarray(hr_image)[:SCALE * PATCH_SIZE, :SCALE * PATCH_SIZE])
  expected_count = sum(patch_count(round(width * factor), round(height * factor), SCALE, PATCH_SIZE, STRIDE)
                       for width, height in IMAGE_SIZES.values() for factor in downscales)
  assert expected_count > 15 + half_count and len(lr_patches) == expected_count
  assert summary.startswith(f'{output}: 2 images used, 0 skipped, {expected_count} patches')


def test_a_file_from_before_downscales_existed_counts_as_downscales_1(tmp_path, images_dir):
  """Patch files written before the attribute was added were made from the images as they are."""
  output = tmp_path / 'patches.h5'
  patches.prepare(str(images_dir), str(output), SCALE, 'y', PATCH_SIZE, STRIDE)
  with h5py.File(output, 'a') as data_file:
    del data_file.attrs['downscales']
  plain = patches.data_attributes(SCALE, 'y', PATCH_SIZE, STRIDE)
  assert len(patches.open_patches(str(output), plain, 2**30)) == 15
  augmented = patches.data_attributes(SCALE, 'y', PATCH_SIZE, STRIDE, (1.0, 0.8))
  with pytest.raises(files.InputError, match='--downscales=1 .*--downscales=1,0.8'):
    patches.open_patches(str(output), augmented, 2**30)


@pytest.mark.parametrize('factors', [['0'], ['1.5'], ['x'], ['1', '-0.5']])
def test_downscales_outside_0_to_1_are_refused_with_the_flag_in_the_message(factors):
  with pytest.raises(files.InputError, match='--downscales='):
    patches.parse_downscales(factors)


def test_a_glob_pattern_names_part_of_a_folder_so_validation_images_can_be_held_out(tmp_path, images_dir):
  """`--images_dir=folder/*[!a].png` plus `--val_dir=folder/a.png` split one folder without copying it."""
  (images_dir / 'notes.txt').write_text('not an image')
  assert files.list_images(str(images_dir / '*')) == [str(images_dir / 'a.png'), str(images_dir / 'b.png')]
  training = files.list_images(f'{images_dir / "*[!a].png"}, {images_dir / "a.*"}')
  assert training == [str(images_dir / 'b.png'), str(images_dir / 'a.png')]
  output = tmp_path / 'b_only.h5'
  patches.prepare(str(images_dir / 'b*.png'), str(output), SCALE, 'y', PATCH_SIZE, STRIDE)
  with h5py.File(output, 'r') as data_file:
    assert data_file['input'].shape[0] == ((44 // SCALE - PATCH_SIZE) // STRIDE + 1) * \
        ((38 // SCALE - PATCH_SIZE) // STRIDE + 1)
  with pytest.raises(files.InputError, match=r'c\*\.png: pattern matches no'):
    files.list_images(str(images_dir / 'c*.png'))
  (images_dir / 'a.png').rename(images_dir / 'a[1].png')  # an existing file is taken by its name
  assert files.list_images(str(images_dir / 'a[1].png')) == [str(images_dir / 'a[1].png')]
