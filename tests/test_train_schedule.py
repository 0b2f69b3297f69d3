"""Training beyond the loop: batch order, augmentation, validation, checkpoint selection, learning-rate
decay, early stopping, the last layer's learning rate and the run log."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from superres import inference
from superres import patches
import train
from superres import training
from conftest import smooth_rgb
from superres.runtime import tf

SCALE = 2


def test_every_patch_is_visited_once_per_epoch_and_a_resumed_run_sees_the_same_batches():
  lr_data = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
  patch_data = patches.InMemoryPatches(
      {'input': lr_data, 'label': np.repeat(np.repeat(lr_data, SCALE, axis=1), SCALE, axis=2)})
  uninterrupted = training.batches(patch_data, batch_size=3, seed=7, first_step=0, augment_batches=False)
  first_epoch = [next(uninterrupted)[0] for _ in range(4)]  # 10 patches in batches of 3: 4 steps
  visited = np.concatenate([batch.ravel() for batch in first_epoch]) * 255
  assert sorted(np.rint(visited).astype(int)) == list(range(10))
  resumed = training.batches(patch_data, batch_size=3, seed=7, first_step=2, augment_batches=False)
  np.testing.assert_array_equal(next(resumed)[0], first_epoch[2])


def test_augmentation_draws_all_eight_flips_and_rotations_and_keeps_lr_and_hr_aligned():
  rng = np.random.default_rng(0)
  lr_batch = rng.integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
  hr_batch = np.repeat(np.repeat(lr_batch, SCALE, axis=1), SCALE, axis=2)  # each LR pixel is an r x r block
  variants = set()
  for seed in range(64):
    lr_out, hr_out = training.augment(lr_batch, hr_batch, np.random.default_rng(seed))
    np.testing.assert_array_equal(np.repeat(np.repeat(lr_out, SCALE, axis=1), SCALE, axis=2), hr_out)
    variants.add(lr_out.tobytes())
  assert len(variants) == 8


@pytest.fixture(scope='module')
def validation_images(tmp_path_factory):
  folder = tmp_path_factory.mktemp('validation')
  for index in range(2):
    Image.fromarray(smooth_rgb(40, 46, seed=10 + index)).save(folder / f'val{index}.png')
  return folder


@pytest.fixture(scope='module')
def scheduled_run(tmp_path_factory, training_images, validation_images, train_in_process):
  """A y x2 run validated every 5 steps that can never improve after its first score (min_improvement is
  huge), so the learning rate decays after each patience of 2 validations until it falls below the minimum:
  validations at 5, 10, ...; decays at 15 (1e-4), 25 (1e-5) and 35 (1e-6 < 1e-5: stop)."""
  folder = tmp_path_factory.mktemp('scheduled')
  args = [f'--data={folder / "patches.h5"}', f'--images_dir={training_images}',
          f'--checkpoint_dir={folder / "checkpoint"}', f'--scale={SCALE}', '--channels=y', '--patch_size=6',
          '--stride=4', '--steps=1000', f'--val_dir={validation_images}', '--val_every=5',
          '--decay_patience=2', '--min_improvement=1000', '--learning_rate=1e-3', '--min_learning_rate=1e-5',
          '--save_every=1000', '--seed=0']
  train_in_process(*args)
  return folder / 'checkpoint', args


def test_a_decay_that_lands_on_the_minimum_rate_up_to_float32_rounding_keeps_training():
  rate = np.float32(1e-4).item() * 0.1  # what the float32 variable gives back, decayed
  assert rate < 1e-5 and not train.below_minimum(np.float32(rate).item(), 1e-5)
  assert train.below_minimum(np.float32(1e-5 * 0.1).item(), 1e-5)


def read_json_lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_learning_rate_decays_on_a_plateau_and_training_stops_below_the_minimum(scheduled_run):
  checkpoint_dir, _ = scheduled_run
  log = read_json_lines(checkpoint_dir / 'validation.jsonl')
  assert [record['step'] for record in log] == [5, 10, 15, 20, 25, 30, 35]
  assert [record['learning_rate'] for record in log] == [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-6]
  assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith('espcn.ckpt-35')


def test_best_validation_weights_are_kept_as_a_model_folder_of_their_own(scheduled_run):
  """Any gain makes new best weights, even one too small to restart the patience."""
  checkpoint_dir, _ = scheduled_run
  best_dir = checkpoint_dir / 'best'
  log = read_json_lines(checkpoint_dir / 'validation.jsonl')
  best = max(log, key=lambda record: record['val_psnr'])
  assert best['step'] > log[0]['step']  # later gains, all far below --min_improvement=1000
  assert tf.train.latest_checkpoint(str(best_dir)).endswith(f'espcn.ckpt-{best["step"]}')
  assert log[-1]['best_val_psnr'] == best['val_psnr']
  upscaler = inference.Upscaler.from_checkpoint(str(best_dir), SCALE, 'y')
  assert upscaler.upscale(smooth_rgb(9, 7)).shape == (18, 14, 3)
  upscaler.session.close()
  runs = read_json_lines(best_dir / 'runs.jsonl')
  assert '--val_every=5' in runs[0]['command'] and runs[0]['machine'] and runs[0]['start_step'] == 0


def test_a_run_that_stopped_early_stays_stopped_when_started_again(scheduled_run, train_in_process):
  checkpoint_dir, args = scheduled_run
  train_in_process(*args)
  assert tf.train.latest_checkpoint(str(checkpoint_dir)).endswith('espcn.ckpt-35')
  assert len(read_json_lines(checkpoint_dir / 'runs.jsonl')) == 2


@pytest.mark.parametrize('pattern', ['', '*.png'])
def test_validating_on_a_test_set_is_refused(tmp_path, training_images, train_in_process, pattern):
  test_set = tmp_path / 'Set5'
  test_set.mkdir()
  Image.fromarray(smooth_rgb(40, 40)).save(test_set / 'bird.png')
  with pytest.raises(SystemExit):
    train_in_process(f'--data={tmp_path / "patches.h5"}', f'--images_dir={training_images}',
                     f'--checkpoint_dir={tmp_path / "checkpoint"}', f'--val_dir={test_set / pattern}',
                     '--steps=5')
  assert not (tmp_path / 'checkpoint').exists()


def test_last_layer_learning_rate_scale_zero_freezes_only_the_last_layer(tmp_path, training_images,
                                                                         train_in_process):
  checkpoints = {}
  for steps in (1, 30):
    folder = tmp_path / f'steps{steps}'
    train_in_process(f'--data={tmp_path / "patches.h5"}', f'--images_dir={training_images}',
                     f'--checkpoint_dir={folder}', f'--scale={SCALE}', '--channels=y', '--patch_size=6',
                     '--stride=4', f'--steps={steps}', '--last_layer_lr_scale=0', '--seed=3')
    checkpoints[steps] = tf.train.latest_checkpoint(str(folder))
  for name, should_change in (('layer1-conv1/weights', True), ('layer3-conv3/weights', False),
                              ('layer3-conv3/bias', False)):
    before, after = (tf.train.load_variable(checkpoints[steps], name) for steps in (1, 30))
    assert (not np.array_equal(before, after)) == should_change, name


def test_init_from_copies_the_layers_whose_shapes_agree(tmp_path, training_images, train_in_process):
  """A x3 run started from a x2 model takes its layers 1 and 2; layer 3 (r*r*C outputs) starts afresh."""
  folders = {scale: tmp_path / f'x{scale}' for scale in (2, 3)}
  common = [f'--images_dir={training_images}', '--channels=y', '--patch_size=6', '--stride=4', '--seed=5']
  train_in_process(*common, f'--data={tmp_path / "x2.h5"}', f'--checkpoint_dir={folders[2]}', '--scale=2',
                   '--steps=10')
  train_in_process(*common, f'--data={tmp_path / "x3.h5"}', f'--checkpoint_dir={folders[3]}', '--scale=3',
                   '--steps=1', '--learning_rate=0', '--min_learning_rate=0', f'--init_from={folders[2]}')
  source, started = (tf.train.latest_checkpoint(str(folders[scale])) for scale in (2, 3))
  for name in ('layer1-conv1/weights', 'layer2-conv2/bias'):
    np.testing.assert_array_equal(tf.train.load_variable(source, name), tf.train.load_variable(started, name))
  assert tf.train.load_variable(started, 'layer3-conv3/weights').shape[-1] == 9


def hr_band(edge, start, stop, side):
  """Index of the HR pixels `start` to `stop` (exclusive) in from one edge of a batch of side x side patches."""
  band = slice(start, stop) if edge in ('top', 'left') else slice(side - stop, side - start)
  return (slice(None), band) if edge in ('top', 'bottom') else (slice(None), slice(None), band)


@pytest.mark.parametrize('loss_border', [0, 1, 2])
def test_loss_border_leaves_out_exactly_the_rim_of_r_times_border_pixels_on_each_side(loss_border):
  """Changing the HR patch within r * loss_border pixels of any of its four edges leaves the loss as it was;
  changing the line just inside that rim, on any side, or the middle of the patch, changes it."""
  rim, side = SCALE * loss_border, 12
  with tf.Graph().as_default():
    graph = training.build_training_graph(SCALE, 1, 'none', 1e-3, 1.0, loss_border)
    rng = np.random.default_rng(0)
    lr_batch = rng.uniform(size=(2, side // SCALE, side // SCALE, 1)).astype(np.float32)
    hr_batch = rng.uniform(size=(2, side, side, 1)).astype(np.float32)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())

      def loss_with_change(index):
        hr_changed = hr_batch.copy()
        hr_changed[index] += 0.5
        return session.run(graph.loss, {graph.lr_patches: lr_batch, graph.hr_patches: hr_changed})

      loss = session.run(graph.loss, {graph.lr_patches: lr_batch, graph.hr_patches: hr_batch})
      for edge in ('top', 'bottom', 'left', 'right'):
        if rim:
          assert loss_with_change(hr_band(edge, 0, rim, side)) == loss, f'the {edge} rim counts'
        assert loss_with_change(hr_band(edge, rim, rim + 1, side)) != loss, f'the line in from the {edge} rim'
      assert loss_with_change((slice(None), slice(5, 7), slice(5, 7))) != loss


def test_epochs_train_until_that_many_passes_over_the_patches_are_done(tmp_path, training_images, train_in_process):
  """--epochs (without --steps) is a total too: an epoch is ceil(patches / batch size) steps, the last batch
  short; a run with a higher --epochs in the same folder goes on to its total."""
  data, run = tmp_path / 'patches.h5', tmp_path / 'run'
  patches.prepare(str(training_images), str(data), SCALE, 'y', 6, 4)
  num_patches = len(patches.open_patches(str(data), patches.data_attributes(SCALE, 'y', 6, 4), 2**30))
  assert num_patches % 10 != 0  # so that rounding the steps of an epoch down or up differ
  steps_per_epoch = -(-num_patches // 10)
  for epochs in (2, 3):
    train_in_process(f'--data={data}', f'--checkpoint_dir={run}', f'--scale={SCALE}', '--channels=y',
                     '--patch_size=6', '--stride=4', '--batch_size=10', f'--epochs={epochs}', '--save_every=5')
    latest = tf.train.latest_checkpoint(str(run))
    assert latest.endswith(f'espcn.ckpt-{epochs * steps_per_epoch}')
    assert tf.train.load_variable(latest, 'global_step') == epochs * steps_per_epoch
  runs = read_json_lines(run / 'runs.jsonl')
  assert [(record['start_step'], record['total_steps']) for record in runs] == [
      (0, 2 * steps_per_epoch), (2 * steps_per_epoch, 3 * steps_per_epoch)]


def test_validation_psnr_is_the_psnr_generate_eval_dir_reports_for_the_best_weights(
    tmp_path, scheduled_run, validation_images, main_in_process):
  """The score that chose best/ is the score a user gets from `generate.py --eval_dir` on the same images."""
  checkpoint_dir, _ = scheduled_run
  best = max(read_json_lines(checkpoint_dir / 'validation.jsonl'), key=lambda record: record['val_psnr'])
  report_path = tmp_path / 'scores.json'
  main_in_process('generate', f'--eval_dir={validation_images}', f'--checkpoint_dir={checkpoint_dir / "best"}',
                  f'--scale={SCALE}', '--channels=y', f'--output_dir={tmp_path / "eval"}', f'--json={report_path}')
  report = json.loads(report_path.read_text())
  assert report['checkpoint'].endswith(f'espcn.ckpt-{best["step"]}')
  assert len(report['images']) == 2
  assert round(report['mean']['psnr_y'], 4) == best['val_psnr']


def test_a_model_card_names_every_machine_the_run_trained_on(tmp_path, scheduled_run, run_script):
  """A run resumed on another machine (a new session's) is not credited to the first machine alone."""
  checkpoint_dir, _ = scheduled_run
  run_dir = tmp_path / 'run'
  shutil.copytree(checkpoint_dir, run_dir)
  first, *_ = read_json_lines(run_dir / 'runs.jsonl')
  resumed = dict(first, machine='Another CPU, 2 cores', start_step=20)
  with open(run_dir / 'runs.jsonl', 'a') as log:
    log.write(json.dumps(resumed) + '\n')
  assert run_script('tools.ship_model', f'--run_dir={run_dir}', f'--to={tmp_path / "model"}').returncode == 0
  card = (tmp_path / 'model' / 'MODEL.md').read_text()
  machine_line = next(line for line in card.splitlines() if line.startswith('- Machine:'))
  assert machine_line == (f'- Machine: {first["machine"]}; TensorFlow {first["tensorflow"]}; '
                          f'from step 20: Another CPU, 2 cores; TensorFlow {first["tensorflow"]}.')


def test_a_shipped_model_card_carries_the_card_of_the_model_it_started_from(
    tmp_path, scheduled_run, validation_images, training_images, train_in_process, run_script):
  """ship_model.py writes the card from the run's logs; a run started with --init_from keeps (in
  STARTING_POINT.md) the card of its starting model as it was then, and its own card nests it."""
  checkpoint_dir, args = scheduled_run
  first_model = tmp_path / 'first_model'
  shipped = run_script('tools.ship_model', f'--run_dir={checkpoint_dir}', f'--to={first_model}')
  assert shipped.returncode == 0, shipped.stderr
  first_card = (first_model / 'MODEL.md').read_text()
  assert first_card.startswith(f'# ESPCN, y x{SCALE}') and f'--checkpoint_dir={checkpoint_dir}' in first_card
  assert 'Starting point' not in first_card
  second_run = tmp_path / 'second_run'
  train_in_process(f'--data={tmp_path / "x3.h5"}', f'--images_dir={training_images}', '--scale=3',
                   '--channels=y', '--patch_size=6', '--stride=4', f'--checkpoint_dir={second_run}',
                   '--steps=10', f'--val_dir={validation_images}', '--val_every=5',
                   f'--init_from={first_model}')
  starting_point = (second_run / 'STARTING_POINT.md').read_text()
  assert f'`--init_from={first_model}`' in starting_point and '`layer3-conv3/weights`' not in starting_point
  (first_model / 'MODEL.md').write_text('# replaced by a later model\n')  # the card must already be copied
  second_model = tmp_path / 'second_model'
  assert run_script('tools.ship_model', f'--run_dir={second_run}', f'--to={second_model}').returncode == 0
  second_card = (second_model / 'MODEL.md').read_text()
  own_card, nested = second_card.split('## Starting point')
  assert own_card.startswith('# ESPCN, y x3') and f'--checkpoint_dir={second_run}' in own_card
  assert f'### ESPCN, y x{SCALE}' in nested and f'--checkpoint_dir={checkpoint_dir}' in nested
