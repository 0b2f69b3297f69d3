"""Bad inputs end a run with one 'error: ' line naming the culprit, exit code != 0 and no traceback, and
never leave a broken or half-written output behind (an earlier complete output stays as it was).

prepare_data.py does not import TensorFlow, so its runs are cheap; generate.py and train.py runs each pay
TensorFlow's start-up, so there is one run per case and no more.
"""
import io
import types

import numpy as np
import pytest
from superres import patches
from PIL import Image
from superres.runtime import tf


PATCH_SIZE, STRIDE, SCALE = 5, 4, 3


def write_random_bytes(path, size=3000, seed=0):
  """A file with an image extension that is not an image."""
  path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
  return path


def write_truncated_png(path, image):
  """A PNG cut in the middle of its pixel data: the header opens, the pixels do not decode."""
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  return path


def regular_file(tmp_path):
  """A regular file, under which no folder can be created: an unwritable output location, even as root."""
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  return blocker


def pngs_in(folder):
  return sorted(path.name for path in folder.glob('*.png')) if folder.exists() else []


def files_in(folder):
  """Every file under a folder, by relative path, with its bytes and modification time."""
  return {path.relative_to(folder).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
          for path in sorted(folder.rglob('*')) if path.is_file()}


def failed_in_process(capsys, run, *args):
  """Runs a script's main() in-process (e.g. train_in_process) that must stop on a bad input, and returns
  what assert_input_error reads of a script run: its exit code and what it printed."""
  capsys.readouterr()  # (whatever earlier steps printed)
  with pytest.raises(SystemExit) as stopped:
    run(*args)
  printed = capsys.readouterr()
  return types.SimpleNamespace(returncode=stopped.value.code, stdout=printed.out, stderr=printed.err)


# ---------------------------------------------------------------------------------------------------------
# prepare_data.py
# ---------------------------------------------------------------------------------------------------------

def test_prepare_data_with_a_missing_folder(tmp_path, run_script, assert_input_error):
  missing, output = tmp_path / 'no_such_folder', tmp_path / 'patches.h5'
  result = run_script('prepare_data.py', f'--images_dir={missing}', f'--output={output}')
  assert_input_error(result, missing)
  assert not output.exists()


def test_prepare_data_with_a_folder_without_images(tmp_path, run_script, assert_input_error):
  empty, output = tmp_path / 'empty', tmp_path / 'patches.h5'
  empty.mkdir()
  (empty / 'notes.txt').write_text('no images here')
  result = run_script('prepare_data.py', f'--images_dir={empty}', f'--output={output}')
  assert_input_error(result, empty)
  assert not output.exists()


def test_prepare_data_skips_unreadable_and_too_small_images_and_counts_them(
    tmp_path, make_image, run_script, patch_count):
  """Bad files among good ones are skipped with a warning each; the summary counts them by reason."""
  folder, output = tmp_path / 'images', tmp_path / 'patches.h5'
  folder.mkdir()
  make_image(50, 41, seed=1).save(folder / 'good1.png')
  make_image(38, 44, seed=2).save(folder / 'good2.png')
  bad_files = [write_random_bytes(folder / 'noise.png'),
               write_truncated_png(folder / 'truncated.png', make_image(60, 60, seed=3)),
               folder / 'tiny.png']
  make_image(10, 10, seed=4).save(folder / 'tiny.png')  # 3x3 LR pixels at x3: less than one 5x5 patch
  result = run_script('prepare_data.py', f'--images_dir={folder}', f'--output={output}',
                      f'--scale={SCALE}', f'--patch_size={PATCH_SIZE}', f'--stride={STRIDE}')
  assert result.returncode == 0, result.stderr
  assert 'Traceback' not in result.stderr
  warnings = [line for line in result.stderr.splitlines() if line.startswith('skipped: ')]
  assert len(warnings) == 3, result.stderr
  for bad_file in bad_files:
    assert sum(str(bad_file) in warning for warning in warnings) == 1, (bad_file, warnings)
  expected_patches = (patch_count(50, 41, SCALE, PATCH_SIZE, STRIDE)
                      + patch_count(38, 44, SCALE, PATCH_SIZE, STRIDE))
  assert (f'{output}: 2 images used, 3 skipped (1 too small, 2 unreadable), {expected_patches} patches'
          in result.stdout), result.stdout
  assert output.is_file()


def test_prepare_data_skips_a_16_bit_image_instead_of_clipping_it_to_white(
    tmp_path, make_image, run_script):
  folder, output = tmp_path / 'images', tmp_path / 'patches.h5'
  folder.mkdir()
  make_image(40, 40).save(folder / 'good.png')
  sixteen_bit = folder / 'sixteen_bit.png'
  Image.fromarray(np.full((40, 40), 30000, np.uint16)).save(sixteen_bit)  # mode I;16
  result = run_script('prepare_data.py', f'--images_dir={folder}', f'--output={output}',
                      f'--scale={SCALE}', f'--patch_size={PATCH_SIZE}', f'--stride={STRIDE}')
  assert result.returncode == 0, result.stderr
  warnings = [line for line in result.stderr.splitlines() if line.startswith('skipped: ')]
  assert len(warnings) == 1 and str(sixteen_bit) in warnings[0] and '16' in warnings[0], result.stderr
  assert '1 image used, 1 skipped (1 unreadable)' in result.stdout, result.stdout


def test_prepare_data_into_an_unwritable_folder(tmp_path, make_image, run_script, assert_input_error):
  folder = tmp_path / 'images'
  folder.mkdir()
  make_image(40, 40).save(folder / 'good.png')
  unwritable = regular_file(tmp_path) / 'sub'
  result = run_script('prepare_data.py', f'--images_dir={folder}', f'--output={unwritable / "patches.h5"}')
  assert_input_error(result, unwritable)


def test_failed_prepare_data_run_leaves_the_existing_file_byte_identical(
    tmp_path, make_image, run_script, assert_input_error):
  """A run whose every image is unreadable must not replace (or truncate) a good file from before."""
  good, output = tmp_path / 'good', tmp_path / 'patches.h5'
  good.mkdir()
  make_image(40, 40).save(good / 'good.png')
  patches.prepare(str(good), str(output), SCALE, 'rgb', PATCH_SIZE, STRIDE)
  before = output.read_bytes()
  unreadable = tmp_path / 'unreadable'
  unreadable.mkdir()
  write_random_bytes(unreadable / 'noise.png')
  write_truncated_png(unreadable / 'truncated.png', make_image(60, 60, seed=3))
  result = run_script('prepare_data.py', f'--images_dir={unreadable}', f'--output={output}',
                      f'--scale={SCALE}', f'--patch_size={PATCH_SIZE}', f'--stride={STRIDE}')
  assert_input_error(result, unreadable, only_line=False)  # the two 'skipped:' warnings come first
  assert output.read_bytes() == before
  assert sorted(path.name for path in tmp_path.iterdir()) == ['good', 'patches.h5', 'unreadable']


# ---------------------------------------------------------------------------------------------------------
# generate.py
# ---------------------------------------------------------------------------------------------------------

def run_generate(run_script, checkpoint_dir, output_dir, *args, scale=3, channels='rgb'):
  return run_script('generate.py', f'--checkpoint_dir={checkpoint_dir}', f'--output_dir={output_dir}',
                    f'--scale={scale}', f'--channels={channels}', *args)


@pytest.mark.slow
def test_generate_with_a_file_that_is_not_an_image(tmp_path, run_script, trained_run, assert_input_error):
  not_an_image = write_random_bytes(tmp_path / 'photo.png')
  output_dir = tmp_path / 'out'
  result = run_generate(run_script, trained_run.checkpoint_dir, output_dir, f'--input={not_an_image}')
  assert_input_error(result, not_an_image)
  assert pngs_in(output_dir) == []


@pytest.mark.slow
def test_generate_with_a_truncated_image_keeps_an_earlier_output(
    tmp_path, make_image, run_script, trained_run, assert_input_error):
  """The truncated file is reported, and the complete photo_x3.png of an earlier run is left as it was."""
  truncated = write_truncated_png(tmp_path / 'photo.png', make_image(60, 60, seed=3))
  output_dir = tmp_path / 'out'
  output_dir.mkdir()
  make_image(180, 180, seed=9).save(output_dir / 'photo_x3.png')
  before = (output_dir / 'photo_x3.png').read_bytes()
  result = run_generate(run_script, trained_run.checkpoint_dir, output_dir, f'--input={truncated}')
  assert_input_error(result, truncated)
  assert (output_dir / 'photo_x3.png').read_bytes() == before
  assert sorted(path.name for path in output_dir.iterdir()) == ['photo_x3.png']


@pytest.mark.parametrize('size', ['0x0', '-3x-3', '1920x1081', 'wide'])
def test_generate_benchmark_with_a_bad_size(run_script, assert_input_error, size):
  result = run_script('generate.py', '--benchmark', '--random_weights', '--scale=3', f'--size={size}')
  assert_input_error(result, f'--size={size}')


def test_generate_refuses_inputs_whose_outputs_would_share_a_name(
    tmp_path, make_image, run_script, assert_input_error):
  """a.png and a.jpg would both become a_x3.png: refused before any work, nothing written."""
  folder, output_dir = tmp_path / 'photos', tmp_path / 'out'
  folder.mkdir()
  make_image(20, 20, seed=1).save(folder / 'a.png')
  make_image(20, 20, seed=2).save(folder / 'a.jpg')
  result = run_script('generate.py', '--random_weights', f'--input={folder}', f'--output_dir={output_dir}')
  assert_input_error(result, folder / 'a.png', folder / 'a.jpg')
  assert pngs_in(output_dir) == []


def test_generate_evaluation_of_a_too_small_image_prints_one_clean_line(
    tmp_path, make_image, run_script, assert_input_error):
  """The error ends the evaluation loop: no progress bar may share its line (stderr is not a terminal)."""
  folder = tmp_path / 'ground_truth'
  folder.mkdir()
  make_image(60, 60).save(folder / 'a_good.png')
  make_image(12, 12).save(folder / 'b_tiny.png')
  result = run_script('generate.py', '--random_weights', f'--eval_dir={folder}',
                      f'--output_dir={tmp_path / "out"}')
  assert_input_error(result, folder / 'b_tiny.png')


def test_generate_with_a_missing_checkpoint_folder(tmp_path, make_image, run_script, assert_input_error):
  make_image(20, 20).save(tmp_path / 'photo.png')
  missing = tmp_path / 'no_checkpoint_here'
  result = run_generate(run_script, missing, tmp_path / 'out', f'--input={tmp_path / "photo.png"}')
  assert_input_error(result, missing)


@pytest.mark.slow
@pytest.mark.parametrize('other_setting', ['--scale=2', '--channels=y'])
def test_generate_with_a_checkpoint_of_another_scale_or_channel_mode(
    tmp_path, make_image, run_script, trained_run, assert_input_error, other_setting):
  """The x3 rgb checkpoint must be refused for x2 or for 'y', with the settings it was trained for."""
  make_image(20, 20).save(tmp_path / 'photo.png')
  result = run_script('generate.py', f'--checkpoint_dir={trained_run.checkpoint_dir}',
                      f'--output_dir={tmp_path / "out"}', f'--input={tmp_path / "photo.png"}', other_setting)
  error = assert_input_error(result, trained_run.checkpoint_dir)
  assert '--scale=3' in error and '--channels=rgb' in error
  assert pngs_in(tmp_path / 'out') == []


@pytest.mark.slow
def test_generate_into_an_unwritable_folder(tmp_path, make_image, run_script, trained_run, assert_input_error):
  make_image(20, 20).save(tmp_path / 'photo.png')
  unwritable = regular_file(tmp_path) / 'sub'
  result = run_generate(run_script, trained_run.checkpoint_dir, unwritable, f'--input={tmp_path / "photo.png"}')
  assert_input_error(result, unwritable)


# ---------------------------------------------------------------------------------------------------------
# train.py
# ---------------------------------------------------------------------------------------------------------

def test_train_with_data_prepared_for_another_scale(
    tmp_path, make_image, run_script, assert_input_error):
  """Patches made for x2 must not train an x3 model: the file's attributes are checked before anything
  is written to the checkpoint folder."""
  images = tmp_path / 'images'
  images.mkdir()
  make_image(40, 40).save(images / 'good.png')
  data = tmp_path / 'patches_x2.h5'
  patches.prepare(str(images), str(data), 2, 'rgb', PATCH_SIZE, STRIDE)
  checkpoint_dir = tmp_path / 'checkpoint'
  result = run_script('train.py', f'--data={data}', f'--checkpoint_dir={checkpoint_dir}', '--scale=3',
                      '--channels=rgb', f'--patch_size={PATCH_SIZE}', f'--stride={STRIDE}', '--steps=5')
  error = assert_input_error(result, data)
  assert '--scale=2' in error
  assert not checkpoint_dir.exists()


@pytest.fixture(scope='module')
def y_x2_run(tmp_path_factory, training_images, train_in_process):
  """A finished 2-step y x2 run (tanh) and the flags it was started with."""
  folder = tmp_path_factory.mktemp('y_x2_run')
  flags = [f'--data={folder / "patches.h5"}', f'--images_dir={training_images}', f'--checkpoint_dir={folder / "run"}',
           '--scale=2', '--channels=y', '--patch_size=6', '--stride=4', '--steps=2']
  train_in_process(*flags)
  return folder / 'run', flags


@pytest.mark.parametrize('other_setting', ['--scale=3', '--channels=rgb', '--output_activation=none'])
def test_train_refuses_a_run_folder_of_other_settings_and_writes_nothing(
    tmp_path, y_x2_run, train_in_process, assert_input_error, capsys, other_setting):
  """Another network cannot resume those weights: refused at once (before preparing its --data), with the
  folder's settings and the new ones in one line, and the folder left byte for byte as it was."""
  run_dir, flags = y_x2_run
  before = files_in(run_dir)
  other_data = tmp_path / 'other.h5'
  result = failed_in_process(capsys, train_in_process, *flags, f'--data={other_data}', '--steps=4', other_setting)
  error = assert_input_error(result, run_dir)
  assert '"scale": 2, "channels": "y", "output_activation": "tanh"' in error
  assert files_in(run_dir) == before
  assert not other_data.exists()


@pytest.fixture
def slim_x3_model(tmp_path):
  """A y x3 model folder of another width (32 and 16 filters, not 64 and 32): no weight of it has the shape of
  a y x2 ESPCN's."""
  model = tmp_path / 'slim_model'
  with tf.Graph().as_default(), tf.Session() as session:
    for name, shape in (('layer1-conv1/weights', [5, 5, 1, 32]), ('layer1-conv1/bias', [32]),
                        ('layer2-conv2/weights', [3, 3, 32, 16]), ('layer2-conv2/bias', [16]),
                        ('layer3-conv3/weights', [3, 3, 16, 9]), ('layer3-conv3/bias', [9])):
      tf.get_variable(name, shape)
    session.run(tf.global_variables_initializer())
    tf.train.Saver().save(session, str(model / 'espcn.ckpt'), global_step=7)
  return model


def init_y_x2_run_from(model, folder, training_images, train_in_process, capsys):
  """A y x2 run in folder/run started --init_from=model, its data prepared beforehand: the failure."""
  data = folder / 'patches.h5'
  patches.prepare(str(training_images), str(data), 2, 'y', 6, 4)
  return failed_in_process(capsys, train_in_process, f'--data={data}', f'--checkpoint_dir={folder / "run"}',
                           '--scale=2', '--channels=y', '--patch_size=6', '--stride=4', '--steps=2',
                           f'--init_from={model}')


def test_train_init_from_a_model_without_one_layer_of_this_networks_shapes(
    tmp_path, slim_x3_model, training_images, train_in_process, assert_input_error, capsys):
  """One error line naming the model's checkpoint and the flag, not an empty or a failed restore."""
  result = init_y_x2_run_from(slim_x3_model, tmp_path, training_images, train_in_process, capsys)
  assert_input_error(result, slim_x3_model / 'espcn.ckpt-7', '--init_from')


def test_train_refusing_its_init_from_model_leaves_no_run_folder_behind(
    tmp_path, slim_x3_model, training_images, train_in_process, capsys):
  """Like every refused input (check_run_dir: 'without writing anything'). The config.json left behind makes
  the folder refuse a corrected command of another --scale, as if it held a run of those settings."""
  init_y_x2_run_from(slim_x3_model, tmp_path, training_images, train_in_process, capsys)
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow
def test_train_from_a_corrupt_init_from_checkpoint(tmp_path, run_script, trained_run, assert_input_error):
  corrupt = tmp_path / 'model'
  corrupt.mkdir()
  (corrupt / 'checkpoint').write_text('model_checkpoint_path: "espcn.ckpt-5"\n')
  (corrupt / 'espcn.ckpt-5.index').write_bytes(b'not a checkpoint index')
  result = run_script('train.py', f'--data={trained_run.data}', f'--checkpoint_dir={tmp_path / "run"}',
                      '--scale=3', '--channels=rgb', '--patch_size=8', '--stride=4', '--steps=5',
                      f'--init_from={corrupt}')
  assert_input_error(result, corrupt / 'espcn.ckpt-5')


@pytest.mark.slow
def test_train_refuses_to_write_into_a_shipped_model_folder(tmp_path, run_script, trained_run,
                                                           assert_input_error):
  shipped = tmp_path / 'espcn_rgb_x3'
  shipped.mkdir()
  (shipped / 'MODEL.md').write_text('# A shipped model\n')
  result = run_script('train.py', f'--data={trained_run.data}', f'--checkpoint_dir={shipped}', '--scale=3',
                      '--channels=rgb', '--patch_size=8', '--stride=4', '--steps=5')
  assert_input_error(result, shipped)
  assert sorted(path.name for path in shipped.iterdir()) == ['MODEL.md']


# ---------------------------------------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------------------------------------

def test_ship_model_with_a_run_missing_its_logs_leaves_the_shipped_model_as_it_was(
    tmp_path, run_script, assert_input_error):
  """Everything is read and checked before the shipped folder is touched; it is replaced only whole."""
  run_dir = tmp_path / 'run'
  (run_dir / 'best').mkdir(parents=True)
  (run_dir / 'best' / 'checkpoint').write_text('model_checkpoint_path: "espcn.ckpt-5"\n')
  for suffix in ('index', 'data-00000-of-00001'):
    (run_dir / 'best' / f'espcn.ckpt-5.{suffix}').write_bytes(b'weights')
  (run_dir / 'config.json').write_text('{"scale": 3, "channels": "y", "output_activation": "none", '
                                       '"ps_order": "c*r*r + p*r + q"}')
  shipped = tmp_path / 'espcn_y_x3'
  shipped.mkdir()
  (shipped / 'MODEL.md').write_text('# the shipped model\n')
  (shipped / 'espcn.ckpt-9.index').write_bytes(b'shipped weights')
  result = run_script('tools.ship_model', f'--run_dir={run_dir}', f'--to={shipped}')
  assert_input_error(result, run_dir / 'runs.jsonl')
  assert sorted(path.name for path in tmp_path.iterdir()) == ['espcn_y_x3', 'run']
  assert sorted(path.name for path in shipped.iterdir()) == ['MODEL.md', 'espcn.ckpt-9.index']
  assert (shipped / 'MODEL.md').read_text() == '# the shipped model\n'


@pytest.mark.parametrize('crop', ['1,2,x,4', '1,2,4', '0,0,0,10'])
def test_make_figure_with_a_bad_crop(tmp_path, run_script, assert_input_error, crop):
  result = run_script('tools.make_figure', f'--result_dir={tmp_path}', f'--crop={crop}',
                      f'--output={tmp_path / "figure.png"}')
  assert_input_error(result, f'--crop={crop}')
  assert not (tmp_path / 'figure.png').exists()
