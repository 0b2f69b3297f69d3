"""Training: it learns, it saves what it learnt, and a second run picks up where the first one stopped.

All tests here read the session's `trained_run`: train.py run as a script with --steps=100, then again
with --steps=300 in the same checkpoint folder.
"""
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

import espcn
from superres import inference
from conftest import smooth_rgb
from superres.runtime import tf

FINAL_LINE = re.compile(r'^step (\d+): loss ([0-9.]+)', re.MULTILINE)


def final_step_and_loss(stdout):
  """The (step, smoothed loss) of train.py's last line, 'step N: loss X, checkpoint in ...'."""
  matches = FINAL_LINE.findall(stdout)
  assert matches, stdout
  step, loss = matches[-1]
  return int(step), float(loss)


def mean_squared_error(data_path, scale, checkpoint=None):
  """The training loss (MSE in [0, 1] units) over every patch of the file, for the weights of `checkpoint`
  or, without one, for a freshly initialised network."""
  with h5py.File(data_path, 'r') as data_file:
    lr_patches = data_file['input'][:].astype(np.float32) / 255.0
    hr_patches = data_file['label'][:].astype(np.float32) / 255.0
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(0)
    lr_images = tf.placeholder(tf.float32, [None, None, None, lr_patches.shape[-1]])
    sr_images = espcn.espcn(lr_images, scale, lr_patches.shape[-1], 'tanh')
    with tf.Session(graph=graph) as session:
      if checkpoint:
        tf.train.Saver().restore(session, checkpoint)
      else:
        session.run(tf.global_variables_initializer())
      sr_patches = session.run(sr_images, {lr_images: lr_patches})
  return float(np.mean((sr_patches - hr_patches) ** 2))


def checkpoint_steps(checkpoint_dir):
  """The step numbers in the names of the checkpoints saved in a folder (espcn.ckpt-STEP.index)."""
  return sorted(int(re.fullmatch(r'espcn\.ckpt-(\d+)\.index', path.name).group(1))
                for path in Path(checkpoint_dir).glob('espcn.ckpt-*.index'))


@pytest.mark.slow
def test_first_run_prepares_the_missing_data_file_and_records_the_model_config(trained_run):
  assert 'does not exist yet: preparing it' in trained_run.first.stdout
  assert trained_run.data.is_file()
  assert 'starting at step 0 of 100' in trained_run.first.stdout
  config = json.loads((trained_run.checkpoint_dir / 'config.json').read_text())
  assert config == {'scale': 3, 'channels': 'rgb', 'output_activation': 'tanh', 'ps_order': espcn.PS_ORDER}


@pytest.mark.slow
def test_a_few_hundred_steps_lower_the_loss(trained_run):
  """The network must learn the tiny data set: its loss after 300 steps is far below that of an untrained
  network, and train.py's reported (smoothed) loss falls from the first run to the resumed one."""
  untrained = mean_squared_error(trained_run.data, trained_run.scale)
  latest = tf.train.latest_checkpoint(str(trained_run.checkpoint_dir))
  trained = mean_squared_error(trained_run.data, trained_run.scale, latest)
  assert trained < 0.25 * untrained, (trained, untrained)
  _, first_loss = final_step_and_loss(trained_run.first.stdout)
  _, resumed_loss = final_step_and_loss(trained_run.resumed.stdout)
  assert resumed_loss < first_loss < untrained


@pytest.mark.slow
def test_resumed_run_continues_the_step_count(trained_run):
  """--steps is the total to reach: the second run restores step 100 and stops at 300."""
  assert re.search(r'resuming \S*espcn\.ckpt-100 at step 100 of 300', trained_run.resumed.stdout), (
      trained_run.resumed.stdout)
  assert final_step_and_loss(trained_run.resumed.stdout)[0] == 300
  latest = tf.train.latest_checkpoint(str(trained_run.checkpoint_dir))
  assert Path(latest).name == 'espcn.ckpt-300'


@pytest.mark.slow
def test_checkpoint_names_match_the_steps_they_hold(trained_run):
  """espcn.ckpt-N must hold global_step N, after exactly N training steps. With --save_every larger than
  the run, only the ends of the two runs (100 and 300) are saved."""
  assert checkpoint_steps(trained_run.checkpoint_dir) == [100, 300]
  for step in (100, 300):
    stored = tf.train.load_variable(str(trained_run.checkpoint_dir / f'espcn.ckpt-{step}'), 'global_step')
    assert stored == step


@pytest.mark.slow
def test_a_restored_upscaler_runs_the_network_of_the_latest_checkpoints_weights(trained_run, checkpoint_network):
  """What was saved last is what comes back: the restored Upscaler's network and pixels are those of the
  weights stored in espcn.ckpt-300, computed apart from inference.py, not those of espcn.ckpt-100."""
  upscaler = inference.Upscaler.from_checkpoint(str(trained_run.checkpoint_dir), 3, 'rgb')
  image = smooth_rgb(27, 31, seed=11)
  lr_array = image.astype(np.float32) / 255.0
  try:
    restored, pixels = upscaler.network(lr_array), upscaler.upscale(image)
  finally:
    upscaler.session.close()
  checkpoints = {step: str(trained_run.checkpoint_dir / f'espcn.ckpt-{step}') for step in (100, 300)}
  assert upscaler.checkpoint == checkpoints[300]
  latest, earlier = (checkpoint_network(checkpoints[step], 3, 'tanh', lr_array) for step in (300, 100))
  np.testing.assert_allclose(restored, latest, atol=1e-5)
  assert np.abs(restored - earlier).max() > 100 * 1e-5  # (so the check above tells the two apart)
  assert pixels.shape == (27 * 3, 31 * 3, 3) and pixels.dtype == np.uint8
  assert np.abs(pixels - np.clip(np.rint(255.0 * latest), 0, 255)).max() <= 1  # (rounding at .5 may differ)


@pytest.mark.slow
def test_restored_weights_are_the_saved_ones(trained_run):
  """Restoring reads back every network variable of the checkpoint unchanged (not a fresh initialisation),
  and freezing turns each into a constant of the same name: no variable is left in the inference graph."""
  upscaler = inference.Upscaler.from_checkpoint(str(trained_run.checkpoint_dir), 3, 'rgb')
  names = [name for name, _ in tf.train.list_variables(upscaler.checkpoint)
           if name.startswith('layer') and name.endswith(('/weights', '/bias'))]  # not Adam's slots
  graph = upscaler.session.graph
  try:
    with graph.as_default():
      assert not tf.global_variables()
    values = upscaler.session.run([graph.get_tensor_by_name(f'{name}:0') for name in names])
  finally:
    upscaler.session.close()
  assert len(names) == 6  # weights and bias of three convolutions
  for name, value in zip(names, values):
    assert graph.get_operation_by_name(name).type == 'Const'
    np.testing.assert_array_equal(value, tf.train.load_variable(upscaler.checkpoint, name))


@pytest.mark.parametrize('channels', ['rgb', 'y'])
def test_in_process_training_writes_a_restorable_checkpoint_of_its_scale(
    tiny_checkpoint, upscaler, checkpoint_network, reference_luminance, channels):
  """The fixtures' checkpoints come from train.py's main() run in-process; they must record their settings,
  end at the requested step like a script run, and restore into an Upscaler of their scale and channels
  that computes the network of the stored weights."""
  folder = tiny_checkpoint(2, channels)
  config = json.loads((Path(folder) / 'config.json').read_text())
  assert config == {'scale': 2, 'channels': channels, 'output_activation': 'tanh',
                    'ps_order': espcn.PS_ORDER}
  latest = tf.train.latest_checkpoint(folder)
  assert latest.endswith('espcn.ckpt-20') and tf.train.load_variable(latest, 'global_step') == 20
  image = smooth_rgb(11, 13, seed=9)
  lr_array = (image if channels == 'rgb' else reference_luminance(image)[..., None]).astype(np.float32) / 255.0
  model = upscaler(2, channels)
  assert model.checkpoint == latest
  restored = model.network(lr_array)
  assert restored.shape == (22, 26, lr_array.shape[-1])
  np.testing.assert_allclose(restored, checkpoint_network(latest, 2, 'tanh', lr_array), atol=1e-5)
