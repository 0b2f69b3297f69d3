"""--schedule=restarts: cosine cycles of the learning rate, Adam reset at each cycle's start, resumable."""
import math
import shlex

import numpy as np
import pytest
from PIL import Image

from superres import training
from conftest import smooth_rgb
from superres.runtime import tf

ADAM_BETA1 = 0.9  # tf.train.AdamOptimizer's default


def rates(restarts, learning_rate, steps):
  """The schedule's learning rate at steps 0 .. steps-1, from the graph."""
  with tf.Graph().as_default():
    step = tf.placeholder(tf.int64, [])
    rate = training.warm_restart_rate(step, learning_rate, restarts)
    with tf.Session() as session:
      return [session.run(rate, {step: value}) for value in range(steps)]


def test_each_cycle_falls_from_the_rate_to_the_minimum_along_a_cosine_then_starts_again():
  """SGDR's formula written out: in a cycle of T steps, step t has min + (max - min) (1 + cos(pi t / T)) / 2."""
  restarts = training.Restarts(first_cycle_steps=4, cycle_mult=2, min_rate=1e-5)
  expected = []
  for length in (4, 8):
    expected += [1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / length)) / 2 for t in range(length)]
  np.testing.assert_allclose(rates(restarts, 1e-3, 12), expected, rtol=1e-4)


@pytest.mark.parametrize('total_steps,starts', [(70, [10, 30]), (31, [10, 30]), (30, [10]), (10, [])])
def test_cycle_starts_are_the_sums_of_the_growing_cycle_lengths(total_steps, starts):
  restarts = training.Restarts(first_cycle_steps=10, cycle_mult=2, min_rate=1e-6)
  assert training.cycle_starts(restarts, total_steps) == starts


@pytest.fixture(scope='module')
def restart_runs(tmp_path_factory, training_images, train_in_process):
  """train_in_process(folder, *flags) with the same data and a 5-step first cycle (restart at step 5)."""
  data = tmp_path_factory.mktemp('restarts') / 'patches.h5'

  def run(folder, *args):
    train_in_process(f'--data={data}', f'--images_dir={training_images}', f'--checkpoint_dir={folder}',
                     '--scale=2', '--channels=y', '--patch_size=6', '--stride=4', '--seed=1',
                     '--cycle_steps=5', '--cycle_mult=2', '--save_every=1', *args)
  return run


@pytest.fixture(scope='module')
def validation_folder(tmp_path_factory):
  folder = tmp_path_factory.mktemp('validation')
  Image.fromarray(smooth_rgb(40, 46, seed=10)).save(folder / 'val.png')
  return folder


def adam_beta1_power(folder, step):
  """Adam's running beta1^(t+1) in the checkpoint of `step`: how many steps its moments have seen."""
  return tf.train.load_variable(str(folder / f'espcn.ckpt-{step}'), 'beta1_power')


@pytest.mark.parametrize('schedule,steps_seen', [('restarts', 1), ('plateau', 6)])
def test_a_new_cycle_resets_adam_as_a_restarted_run_would(tmp_path, restart_runs, schedule, steps_seen):
  """One step after the cycle boundary at step 5, Adam has seen one step; without restarts, six."""
  restart_runs(tmp_path, f'--schedule={schedule}', '--steps=6')
  np.testing.assert_allclose(adam_beta1_power(tmp_path, 6), ADAM_BETA1 ** (steps_seen + 1), rtol=1e-6)


def test_a_run_stopped_at_a_cycle_boundary_resumes_with_the_reset(tmp_path, restart_runs):
  """Stopped at step 5, where the next cycle starts, and resumed to step 8: the same weights and Adam state
  as an uninterrupted run to step 8."""
  uninterrupted, resumed = tmp_path / 'uninterrupted', tmp_path / 'resumed'
  restart_runs(uninterrupted, '--schedule=restarts', '--steps=8')
  restart_runs(resumed, '--schedule=restarts', '--steps=5')
  restart_runs(resumed, '--schedule=restarts', '--steps=8')
  for name in ('layer1-conv1/weights', 'layer3-conv3/bias', 'beta1_power'):
    np.testing.assert_allclose(tf.train.load_variable(str(resumed / 'espcn.ckpt-8'), name),
                               tf.train.load_variable(str(uninterrupted / 'espcn.ckpt-8'), name),
                               rtol=1e-5, atol=1e-7, err_msg=name)


def test_a_model_shipped_from_one_command_names_it_as_its_recipe(tmp_path, restart_runs, validation_folder,
                                                                 run_script):
  """Started twice with the same command (a resume), the card's recipe is that one command, and its learning
  rate is the schedule's description."""
  run_dir = tmp_path / 'run'
  flags_of_run = ['--schedule=restarts', '--steps=10', f'--val_dir={validation_folder}', '--val_every=5']
  restart_runs(run_dir, *flags_of_run[:1], '--steps=5', *flags_of_run[2:])
  restart_runs(run_dir, *flags_of_run)
  shipped = run_script('tools.ship_model', f'--run_dir={run_dir}', f'--to={tmp_path / "model"}')
  assert shipped.returncode == 0, shipped.stderr
  card = (tmp_path / 'model' / 'MODEL.md').read_text()
  recipe_line = next(line for line in card.splitlines() if line.startswith('- Recipe:'))
  assert 'the run was started with different commands' in recipe_line  # --steps=5, then --steps=10
  restart_runs(tmp_path / 'one', *flags_of_run)
  restart_runs(tmp_path / 'one', *flags_of_run)
  assert run_script('tools.ship_model', f'--run_dir={tmp_path / "one"}', f'--to={tmp_path / "model1"}').returncode == 0
  card = (tmp_path / 'model1' / 'MODEL.md').read_text()
  recipe_line = next(line for line in card.splitlines() if line.startswith('- Recipe:'))
  assert '--schedule=restarts' in recipe_line and 'from random initialisation' in recipe_line
  rate_line = next(line for line in card.splitlines() if line.startswith('- Learning rate:'))
  assert rate_line.endswith('warm restarts at steps 5.') and 'from step' not in rate_line  # not every cosine step


def test_a_run_of_one_cosine_cycle_says_so_on_its_card(tmp_path, restart_runs, validation_folder, run_script):
  """A cycle as long as the run has no restart to list: the card says 'one cosine cycle', not 'at steps .'."""
  restart_runs(tmp_path / 'run', '--schedule=restarts', '--cycle_steps=6', '--steps=6',
               f'--val_dir={validation_folder}', '--val_every=3')
  assert run_script('tools.ship_model', f'--run_dir={tmp_path / "run"}', f'--to={tmp_path / "model"}').returncode == 0
  card = (tmp_path / 'model' / 'MODEL.md').read_text()
  rate_line = next(line for line in card.splitlines() if line.startswith('- Learning rate:'))
  assert rate_line == ('- Learning rate: one cosine cycle from 0.001 down to 1e-05 over 6 steps '
                       "(`--schedule=restarts`, no restart within the run's 6).")
  assert card.startswith('# ESPCN, y x2\n')  # clean LR: not the photo model's title


def test_a_card_says_how_its_run_was_chosen_and_how_to_ship_it_again(tmp_path, restart_runs, validation_folder,
                                                                      run_script):
  """--chosen is a line of the card, and the card's "Shipped with" command (with --to and --chosen) makes
  the same card again: a reship keeps the line."""
  restart_runs(tmp_path / 'run', '--schedule=restarts', '--steps=6', f'--val_dir={validation_folder}', '--val_every=3')
  chosen = "the best of 2 runs' validation (General100 only)"
  assert run_script('tools.ship_model', f'--run_dir={tmp_path / "run"}', f'--to={tmp_path / "model"}',
                    f'--chosen={chosen}').returncode == 0
  card = (tmp_path / 'model' / 'MODEL.md').read_text()
  assert f'\n- Chosen: {chosen}\n' in card
  command = card.split('Shipped with:\n\n```\n')[1].split('\n```')[0]
  assert command.startswith('python -m tools.ship_model ') and f'--to={tmp_path / "model"}' in command
  (tmp_path / 'model' / 'MODEL.md').write_text('# an older card\n')
  assert run_script(*shlex.split(command)[2:]).returncode == 0
  assert (tmp_path / 'model' / 'MODEL.md').read_text() == card
