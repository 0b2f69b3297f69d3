"""Compressed LR (issue 32): training data whose LR images are JPEGs (--lr_jpeg_*), and scores on JPEG LR
(generate.py --eval_jpeg_quality, train.py --val_jpeg_quality, tools.jpeg_table), all through one round trip,
pairs.jpeg_round_trip."""
import io
import json
import types

import h5py
import numpy as np
import pytest
from PIL import Image

from superres import colour
from superres import evaluation
from superres import files
from superres import pairs
from superres import patches
from conftest import expected_patch_count
from conftest import smooth_rgb

SCALE = 3
PATCH_SIZE = 6
STRIDE = 4
HR_SIZE = (72, 60)  # 24x20 LR pixels: 5x4 patches, and JPEG blocks that straddle them
LR_JPEG = patches.LrJpeg(low=40, high=90, fraction=1.0, seed=0)
NAMES = [f'image{index:04}.png' for index in range(2000)]


@pytest.fixture(scope='module')
def images_dir(tmp_path_factory):
  """Four RGB images of one size (each gives as many patches) and a gray one."""
  folder = tmp_path_factory.mktemp('jpeg_images')
  for index in range(4):
    Image.fromarray(smooth_rgb(HR_SIZE[1], HR_SIZE[0], index)).save(folder / f'photo{index}.png')
  Image.fromarray(smooth_rgb(HR_SIZE[1], HR_SIZE[0], 9)).convert('L').save(folder / 'gray.png')
  return folder


def prepare(images, output, channels='y', lr_jpeg=LR_JPEG, downscales=(1.0,)):
  """Patches of `images` (a folder, pattern or comma-separated list) as (LR, HR) arrays, and their file."""
  patches.prepare(str(images), str(output), SCALE, channels, PATCH_SIZE, STRIDE, downscales, lr_jpeg)
  with h5py.File(output, 'r') as data_file:
    return data_file['input'][:], data_file['label'][:]


PATCHES_PER_IMAGE = expected_patch_count(HR_SIZE[1] // SCALE, HR_SIZE[0] // SCALE, PATCH_SIZE, STRIDE)


# ---------------------------------------------------------------------------------------------------------
# The round trip
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('mode', ['RGB', 'L'])
def test_the_round_trip_is_pillows_4_2_0_jpeg_at_that_quality_in_the_images_mode(make_image, mode):
  image = make_image(40, 32, mode)
  decoded = pairs.jpeg_round_trip(image, 60)
  stored = io.BytesIO()
  image.save(stored, format='JPEG', quality=60, subsampling='4:2:0')
  assert decoded.mode == mode and decoded.size == image.size
  np.testing.assert_array_equal(np.asarray(decoded), np.asarray(Image.open(stored)))
  assert not np.array_equal(np.asarray(decoded), np.asarray(image))


# ---------------------------------------------------------------------------------------------------------
# Training data: --lr_jpeg_quality, --lr_jpeg_fraction, --lr_jpeg_seed
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('channels', ['y', 'rgb'])
def test_jpeg_changes_only_the_lr_patches_each_cut_from_the_whole_decoded_lr_image(
    tmp_path, images_dir, channels):
  """HR patches as without the flag; LR patches cut from the decoded JPEG of the whole (RGB) LR image at
  its drawn quality, Y taken afterwards, as from a camera's file."""
  clean_lr, clean_hr = prepare(images_dir, tmp_path / 'clean.h5', channels, None)
  jpeg_lr, jpeg_hr = prepare(images_dir, tmp_path / 'jpeg.h5', channels)
  np.testing.assert_array_equal(jpeg_hr, clean_hr)
  expected = []
  for path in files.list_images(str(images_dir)):
    lr_image, hr_image = pairs.make_lr_hr(Image.open(path), SCALE)
    decoded = pairs.jpeg_round_trip(lr_image, patches.lr_jpeg_quality(LR_JPEG, path, 1.0))
    expected.append(pairs.extract_patch_pairs(colour.network_channels(decoded, channels),
                                              colour.network_channels(hr_image, channels),
                                              PATCH_SIZE, STRIDE, SCALE)[0])
  np.testing.assert_array_equal(jpeg_lr, np.concatenate(expected))
  assert np.mean(jpeg_lr != clean_lr) > 0.3


def test_qualities_cover_the_range_and_nothing_outside_it():
  qualities = [patches.lr_jpeg_quality(LR_JPEG, name, 1.0) for name in NAMES]
  assert min(qualities) == LR_JPEG.low and max(qualities) == LR_JPEG.high
  assert len(set(qualities)) == LR_JPEG.high - LR_JPEG.low + 1


def test_the_draw_depends_on_the_file_name_the_downscale_and_the_seed_not_the_folder():
  def draws(lr_jpeg, folder, factor):
    return [patches.lr_jpeg_quality(lr_jpeg, f'{folder}/{name}', factor) for name in NAMES[:50]]
  assert draws(LR_JPEG, 'a', 0.8) == draws(LR_JPEG, 'b/c', 0.8)
  assert draws(LR_JPEG, 'a', 0.8) != draws(LR_JPEG, 'a', 0.9)
  assert draws(LR_JPEG, 'a', 0.8) != draws(LR_JPEG._replace(seed=1), 'a', 0.8)


def test_a_subset_or_a_reordered_list_gives_each_image_the_same_patches(tmp_path, images_dir):
  names = ['photo0.png', 'photo1.png', 'photo2.png', 'photo3.png']
  in_order, _ = prepare(','.join(str(images_dir / name) for name in names), tmp_path / 'all.h5')
  reordered, _ = prepare(','.join(str(images_dir / name) for name in names[::-1]), tmp_path / 'reordered.h5')
  alone, _ = prepare(images_dir / 'photo2.png', tmp_path / 'alone.h5')
  blocks = [in_order[index * PATCHES_PER_IMAGE:(index + 1) * PATCHES_PER_IMAGE] for index in range(len(names))]
  np.testing.assert_array_equal(reordered, np.concatenate(blocks[::-1]))
  np.testing.assert_array_equal(alone, blocks[2])


@pytest.mark.parametrize('fraction', [0.0, 0.3, 0.75])
def test_the_fraction_is_the_share_of_compressed_copies_and_a_larger_one_keeps_a_smaller_ones(fraction):
  lr_jpeg = LR_JPEG._replace(fraction=fraction)
  drawn = [patches.lr_jpeg_quality(lr_jpeg, name, 0.9) for name in NAMES]
  share = np.mean([quality != 0 for quality in drawn])
  assert abs(share - fraction) < 0.04, share
  every_copy = [patches.lr_jpeg_quality(LR_JPEG, name, 0.9) for name in NAMES]
  assert all(quality in (0, full) for quality, full in zip(drawn, every_copy))


def test_a_fraction_leaves_copies_clean_in_the_file(tmp_path, images_dir):
  """With half the copies compressed (five images, two sizes each), some copies' LR patches are exactly the
  clean ones and the others differ, as the draw says."""
  downscales = (1.0, 0.8)
  lr_jpeg = LR_JPEG._replace(fraction=0.5)
  clean, _ = prepare(images_dir, tmp_path / 'clean.h5', lr_jpeg=None, downscales=downscales)
  half, _ = prepare(images_dir, tmp_path / 'half.h5', lr_jpeg=lr_jpeg, downscales=downscales)
  start, compressed = 0, []
  for path in files.list_images(str(images_dir)):
    for factor in downscales:
      lr_image, _ = pairs.make_lr_hr(pairs.shrink(Image.open(path), factor), SCALE)
      count = expected_patch_count(lr_image.height, lr_image.width, PATCH_SIZE, STRIDE)
      drawn = patches.lr_jpeg_quality(lr_jpeg, path, factor)
      assert np.array_equal(half[start:start + count], clean[start:start + count]) == (drawn == 0)
      compressed.append(drawn != 0)
      start += count
  assert 0 < sum(compressed) < len(compressed)


def test_the_settings_are_recorded_and_data_of_other_settings_is_refused(tmp_path, images_dir):
  output = tmp_path / 'jpeg.h5'
  lr_jpeg = LR_JPEG._replace(fraction=0.5, seed=3)
  prepare(images_dir, output, lr_jpeg=lr_jpeg)
  with h5py.File(output, 'r') as data_file:
    assert patches.settings_of(data_file)['lr_jpeg_quality'] == '40,90'
    assert (data_file.attrs['lr_jpeg_fraction'], data_file.attrs['lr_jpeg_seed']) == (0.5, 3)
  wanted = patches.data_attributes(SCALE, 'y', PATCH_SIZE, STRIDE, lr_jpeg=lr_jpeg)
  assert len(patches.open_patches(str(output), wanted, 2**30)) == 5 * PATCHES_PER_IMAGE
  for other in [None, lr_jpeg._replace(fraction=1.0), lr_jpeg._replace(seed=0), lr_jpeg._replace(high=95)]:
    expected = patches.data_attributes(SCALE, 'y', PATCH_SIZE, STRIDE, lr_jpeg=other)
    with pytest.raises(files.InputError, match='data was prepared with .*--lr_jpeg_quality=40,90'):
      patches.open_patches(str(output), expected, 2**30)


def test_clean_data_has_no_jpeg_attributes_and_is_refused_for_jpeg_training(tmp_path, images_dir):
  output = tmp_path / 'clean.h5'
  prepare(images_dir, output, lr_jpeg=None)
  with h5py.File(output, 'r') as data_file:
    assert not [key for key in data_file.attrs if key.startswith('lr_jpeg')]  # its bytes as before the flags
  expected = patches.data_attributes(SCALE, 'y', PATCH_SIZE, STRIDE, lr_jpeg=LR_JPEG)
  with pytest.raises(files.InputError, match=r'prepared with --channels=y --downscales=1 --patch_size'):
    patches.open_patches(str(output), expected, 2**30)


@pytest.mark.parametrize('quality, fraction, message', [
    (['95', '50'], 1.0, '--lr_jpeg_quality=95,50'), (['0', '50'], 1.0, '--lr_jpeg_quality=0,50'),
    (['50', '60', '70'], 1.0, '--lr_jpeg_quality=50,60,70'), (['high'], 1.0, '--lr_jpeg_quality=high'),
    ([], 0.5, '--lr_jpeg_fraction=0.5')])
def test_bad_lr_jpeg_flags_are_refused_with_the_flag_in_the_message(quality, fraction, message):
  with pytest.raises(files.InputError, match=message):
    patches.parse_lr_jpeg(quality, fraction)


def test_train_records_the_compression_in_its_config_and_refuses_data_of_another(
    tmp_path, images_dir, train_in_process, capsys):
  run_dir, data = tmp_path / 'run', tmp_path / 'patches.h5'
  common = [f'--data={data}', f'--images_dir={images_dir}', '--scale=3', '--channels=y',
            f'--patch_size={PATCH_SIZE}', f'--stride={STRIDE}', '--steps=2', '--threads=1']
  train_in_process(*common, f'--checkpoint_dir={run_dir}', '--lr_jpeg_quality=50,95', '--lr_jpeg_fraction=0.5')
  config = json.loads((run_dir / 'config.json').read_text())
  assert {key: config[key] for key in config if key.startswith('lr_jpeg')} == {
      'lr_jpeg_quality': '50,95', 'lr_jpeg_fraction': 0.5, 'lr_jpeg_seed': 0}
  capsys.readouterr()
  with pytest.raises(SystemExit):
    train_in_process(*common, f'--checkpoint_dir={tmp_path / "clean_run"}')
  assert '--lr_jpeg_quality=50,95' in capsys.readouterr().err
  assert not (tmp_path / 'clean_run').exists()


# ---------------------------------------------------------------------------------------------------------
# Scores on compressed LR: generate.py --eval_jpeg_quality, train.py --val_jpeg_quality, tools.jpeg_table
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def eval_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp('jpeg_eval')
  for index in range(2):
    Image.fromarray(smooth_rgb(HR_SIZE[1], HR_SIZE[0], 30 + index)).save(folder / f'truth{index}.png')
  return folder


def evaluate_with_generate(main_in_process, checkpoint_dir, eval_dir, output_dir, *quality_flag):
  """generate.py --eval_dir's outputs: its JSON report and its images by file name, as bytes."""
  main_in_process('generate', f'--eval_dir={eval_dir}', f'--checkpoint_dir={checkpoint_dir}', '--scale=3',
                  '--channels=y', f'--output_dir={output_dir}', f'--json={output_dir / "report.json"}',
                  *quality_flag)
  return types.SimpleNamespace(json=(output_dir / 'report.json').read_bytes(),
                               images={path.name: path.read_bytes() for path in output_dir.glob('*.png')})


@pytest.fixture(scope='module')
def evaluations(tmp_path_factory, eval_dir, tiny_checkpoint, main_in_process):
  """generate.py --eval_dir with the tiny y x3 model: without the flag, with --eval_jpeg_quality=0 and =60."""
  folder = tmp_path_factory.mktemp('jpeg_evaluations')
  checkpoint_dir = tiny_checkpoint(3, 'y')
  return types.SimpleNamespace(
      folder=folder, clean=evaluate_with_generate(main_in_process, checkpoint_dir, eval_dir, folder / 'clean'),
      **{name: evaluate_with_generate(main_in_process, checkpoint_dir, eval_dir, folder / name,
                                      f'--eval_jpeg_quality={quality}') for name, quality in (('zero', 0), ('q60', 60))})


def test_eval_jpeg_quality_upscales_the_decoded_jpeg_and_is_recorded(eval_dir, evaluations):
  clean, jpeg = evaluations.clean, evaluations.q60
  report = json.loads(jpeg.json)
  assert report['eval_jpeg_quality'] == 60 and 'eval_jpeg_quality' not in json.loads(clean.json)
  lr_image, hr_image = pairs.make_lr_hr(Image.open(eval_dir / 'truth0.png'), 3)
  written_lr = np.asarray(Image.open(evaluations.folder / 'q60' / 'truth0_lr.png'))
  np.testing.assert_array_equal(written_lr, np.asarray(pairs.jpeg_round_trip(lr_image, 60)))
  bicubic = evaluation.bicubic_upscale(written_lr, np.asarray(hr_image).shape)
  np.testing.assert_array_equal(np.asarray(Image.open(evaluations.folder / 'q60' / 'truth0_bicubic.png')),
                                bicubic)
  assert jpeg.images['truth0_hr.png'] == clean.images['truth0_hr.png']
  assert jpeg.images['truth0_espcn.png'] != clean.images['truth0_espcn.png']
  assert report['mean']['bicubic_psnr_y'] < json.loads(clean.json)['mean']['bicubic_psnr_y']


def test_eval_jpeg_quality_0_is_the_clean_evaluation_byte_for_byte(eval_dir, evaluations):
  clean, zero = evaluations.clean, evaluations.zero
  assert zero.json == clean.json and zero.images == clean.images
  lr_image, _ = pairs.make_lr_hr(Image.open(eval_dir / 'truth1.png'), 3)
  np.testing.assert_array_equal(np.asarray(Image.open(evaluations.folder / 'zero' / 'truth1_lr.png')),
                                np.asarray(lr_image))


def test_validation_pairs_hold_every_image_at_each_quality(eval_dir, upscaler):
  clean = evaluation.validation_pairs(str(eval_dir), 3)
  assert evaluation.validation_qualities([]) == [0]
  mixed = evaluation.validation_pairs(str(eval_dir), 3, evaluation.validation_qualities(['0', '75']))
  assert len(mixed) == 2 * len(clean)
  for (clean_lr, clean_hr), (same_lr, same_hr), (jpeg_lr, jpeg_hr) in zip(clean, mixed, mixed[len(clean):]):
    np.testing.assert_array_equal(same_lr, clean_lr)
    np.testing.assert_array_equal(jpeg_hr, clean_hr)
    np.testing.assert_array_equal(jpeg_lr, np.asarray(pairs.jpeg_round_trip(Image.fromarray(clean_lr), 75)))
    np.testing.assert_array_equal(same_hr, clean_hr)
  model = upscaler(3, 'y')
  jpeg_only = evaluation.validation_pairs(str(eval_dir), 3, [75])
  assert evaluation.mean_psnr(model, mixed) == pytest.approx(
      (evaluation.mean_psnr(model, clean) + evaluation.mean_psnr(model, jpeg_only)) / 2)
  with pytest.raises(files.InputError, match='--val_jpeg_quality=101'):
    evaluation.validation_qualities(['101'])


def test_jpeg_table_holds_what_generate_reports_at_each_quality(
    tmp_path, eval_dir, tiny_checkpoint, main_in_process, capsys):
  data_dir = tmp_path / 'data'
  for eval_set, names in (('Set5', ['truth0.png']), ('Set14', ['truth0.png', 'truth1.png'])):
    (data_dir / eval_set).mkdir(parents=True)
    for name in names:
      (data_dir / eval_set / name).write_bytes((eval_dir / name).read_bytes())
  photo_model = tiny_checkpoint(3, 'y')
  capsys.readouterr()
  main_in_process('tools.jpeg_table', f'--data_dir={data_dir}', f'--checkpoint_dirs={photo_model}',
                  '--qualities=0,70', f'--json={tmp_path / "table.json"}')
  table = json.loads((tmp_path / 'table.json').read_text())
  assert list(table['Set14']) == ['bicubic', 'checkpoint/espcn_y_x3', photo_model]
  evaluated = evaluate_with_generate(main_in_process, photo_model, data_dir / 'Set14', tmp_path / 'q70',
                                     '--eval_jpeg_quality=70')
  mean = json.loads(evaluated.json)['mean']
  assert table['Set14'][photo_model]['70'] == mean['psnr_y']
  assert table['Set14']['bicubic']['70'] == mean['bicubic_psnr_y']
  assert table['Set14']['bicubic']['0'] > mean['bicubic_psnr_y']
  printed = capsys.readouterr().out
  assert '| Set14, Y-PSNR (dB) | clean | Q 70 |' in printed
  assert f'| ESPCN y x3, clean LR (`{photo_model}`) | {table["Set14"][photo_model]["0"]:.2f} | {mean["psnr_y"]:.2f} |' \
      in printed
