"""Shared fixtures: synthetic images, script runs, and tiny trained checkpoints.

Every image the tests use is made here from NumPy (smooth gradients plus a little noise), so the suite
needs no data set. Training is the expensive part, so checkpoints are trained once per session:

  trained_run        train.py run as a script twice in one folder (x3, rgb): --steps=100, then --steps=300
  tiny_checkpoint    train.py's main() run in-process for any (scale, channels), 20 steps, cached
  upscaler           inference.Upscaler restored from a tiny checkpoint, cached per session

Scripts run in-process too, without a TensorFlow start-up: train_in_process (train.py) and main_in_process
(generate.py and the tools). The references the tests check the code against are here once:
reference_luminance (BT.601 Y written out from the formula) and checkpoint_network (the network of a
checkpoint's stored weights, built apart from inference.py).

Tests that use trained_run are marked slow: run on their own they pay its two TensorFlow start-ups and
training (about 15 s), and most of them start a script of their own on top (about 6 s each); `-m "not slow"`
leaves them out. The whole suite took about 4 minutes on the 2 cores while a training run shared them.
"""
import functools
import inspect
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the scripts are top-level modules, not a package
from superres import runtime  # noqa: F401,E402  (TensorFlow's settings, before anything imports it)

# Settings of the session's training runs: small enough for seconds of CPU, big enough to learn something.
TRAIN_SCALE = 3
TRAIN_PATCH_SIZE = 8
TRAIN_STRIDE = 4
FIRST_RUN_STEPS = 100
RESUMED_RUN_STEPS = 300


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: takes more than 20 s when run alone (deselect with -m "not slow")')


# ---------------------------------------------------------------------------------------------------------
# Synthetic images
# ---------------------------------------------------------------------------------------------------------

def smooth_rgb(height, width, seed=0, noise=4.0):
  """uint8 [height, width, 3]: smooth coloured waves (a seed shifts their phase) plus mild Gaussian noise.

  Smooth content makes bicubic resampling well behaved and gives the network something learnable, while
  the noise keeps every pixel value distinct enough for alignment checks.
  """
  rng = np.random.default_rng(seed)
  rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
  phase = rng.uniform(0, 2 * np.pi, size=3)
  image = np.stack([128 + 100 * np.sin(cols / 9.0 + phase[0]) * np.cos(rows / 11.0),
                    128 + 90 * np.cos(cols / 7.0 + rows / 13.0 + phase[1]),
                    128 + 80 * np.sin((cols + rows) / 10.0 + phase[2])], axis=-1)
  image += rng.normal(0.0, noise, image.shape)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture(scope='session')
def make_image():
  """make_image(width, height, mode='RGB', seed=0) -> a PIL image of that mode made from smooth_rgb.

  Modes: RGB, L, RGBA and LA (alpha: a left-to-right ramp), P (the RGB image quantized to 64 colours) and
  'P+transparency' (P with palette index 0 marked transparent, as a PNG would carry it).
  """
  def make(width, height, mode='RGB', seed=0):
    rgb = Image.fromarray(smooth_rgb(height, width, seed))
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1)))
    if mode == 'RGB':
      return rgb
    if mode == 'L':
      return rgb.convert('L')
    if mode == 'RGBA':
      rgba = rgb.copy()
      rgba.putalpha(alpha)
      return rgba
    if mode == 'LA':
      gray_alpha = rgb.convert('L')
      gray_alpha.putalpha(alpha)
      return gray_alpha
    if mode in ('P', 'P+transparency'):
      palette = rgb.quantize(64, dither=Image.Dither.NONE)
      if mode == 'P+transparency':
        palette.info['transparency'] = 0
      return palette
    raise ValueError(mode)
  return make


@pytest.fixture(scope='session')
def training_images(tmp_path_factory):
  """A folder of three small RGB training images of different sizes."""
  folder = tmp_path_factory.mktemp('training_images')
  for index, (width, height) in enumerate([(72, 60), (67, 66), (62, 73)]):
    Image.fromarray(smooth_rgb(height, width, seed=index)).save(folder / f'train{index}.png')
  return folder


# ---------------------------------------------------------------------------------------------------------
# Running the scripts
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='session')
def run_script():
  """run_script('train.py', '--flag=value', ...) or run_script('tools.ship_model', ...) -> CompletedProcess
  with text stdout and stderr.

  The scripts run from the repository root, as the README runs them (tools as modules, `python -m`);
  tests always pass explicit output paths under tmp_path, so nothing is written into the repository. A
  test of a script's default outputs (relative to the current folder) passes cwd=tmp_path instead.
  """
  def run(script, *args, cwd=REPO_ROOT):
    command = [str(REPO_ROOT / script)] if script.endswith('.py') else ['-m', script]
    return subprocess.run([sys.executable, *command, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)
  return run


@pytest.fixture(scope='session')
def assert_input_error():
  """assert_input_error(result, *names, only_line=True): the bad-input contract of every script.

  A bad input ends the run with exit code != 0 and exactly one line starting 'error: ' that names the
  culprit, and no traceback. With only_line, that line is all there is on stderr.
  """
  def check(result, *names, only_line=True):
    assert result.returncode != 0, f'expected a failure, got exit 0; stdout:\n{result.stdout}'
    assert 'Traceback' not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert len(error_lines) == 1, f'expected one "error: " line on stderr, got:\n{result.stderr}'
    for name in names:
      assert str(name) in error_lines[0], f'{name} not named in {error_lines[0]!r}'
    if only_line:
      assert result.stderr.strip().splitlines() == error_lines, result.stderr
    return error_lines[0]
  return check


# ---------------------------------------------------------------------------------------------------------
# Trained models
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='session')
def trained_run(tmp_path_factory, training_images, run_script):
  """train.py as a user runs it, x3 rgb: --steps=100 (preparing --data, which does not exist yet), then
  --steps=300 in the same folder, which must resume. Both runs' outputs are kept for the tests to read."""
  folder = tmp_path_factory.mktemp('trained_run')
  checkpoint_dir = folder / 'checkpoint'
  data = folder / 'patches.h5'
  common = [f'--data={data}', f'--images_dir={training_images}', f'--checkpoint_dir={checkpoint_dir}',
            f'--scale={TRAIN_SCALE}', '--channels=rgb', f'--patch_size={TRAIN_PATCH_SIZE}',
            f'--stride={TRAIN_STRIDE}', '--batch_size=16', '--save_every=100000', '--seed=0']
  first = run_script('train.py', *common, f'--steps={FIRST_RUN_STEPS}')
  assert first.returncode == 0, first.stderr
  resumed = run_script('train.py', *common, f'--steps={RESUMED_RUN_STEPS}')
  assert resumed.returncode == 0, resumed.stderr
  return types.SimpleNamespace(checkpoint_dir=checkpoint_dir, data=data, first=first, resumed=resumed,
                               scale=TRAIN_SCALE, channels='rgb')


@pytest.fixture(scope='session')
def train_in_process():
  """train_in_process('--flag=value', ...): train.py's own main() in this process, in a fresh graph.

  Its flags are parsed from the given command line, so the checkpoint folder ends up exactly as after a
  `python train.py` run, without a TensorFlow start-up per run.
  """
  from absl import flags  # pylint: disable=import-outside-toplevel
  import train  # pylint: disable=import-outside-toplevel
  from superres.runtime import tf  # pylint: disable=import-outside-toplevel
  if 'checkpoint_dir' not in flags.FLAGS:
    train.define_flags()

  def run(*args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(['train.py', *map(str, args)])
    try:
      with tf.Graph().as_default():
        train.main(['train.py'])
    finally:
      flags.FLAGS.unparse_flags()
  return run


class _FlagsInto:
  """Stands in for absl.flags in the modules of a script while it defines its flags: every absl function
  that takes `flag_values` (DEFINE_*, mark_flag_as_required, adopt_module_key_flags) acts on `values`."""

  def __init__(self, values):
    self._values = values

  def __getattr__(self, name):
    from absl import flags  # pylint: disable=import-outside-toplevel
    function = getattr(flags, name)
    if callable(function) and 'flag_values' in inspect.signature(function).parameters:
      return functools.partial(function, flag_values=self._values)
    return function


@pytest.fixture(scope='session')
def main_in_process():
  """main_in_process('generate', '--flag=value', ...) or ('tools.benchmark_streaming', ...): the module's
  define_flags() and main() in this process, in a fresh graph; returns main's return value.

  generate.py, train.py and the tools define flags of the same names (--scale, --checkpoint_dir, --json),
  which absl's one global FLAGS cannot hold together. So the flags are defined into FlagValues of their own
  (absl.flags is swapped for _FlagsInto in the module and in model_flags and patches, which define flags for
  it) and parsed from the given command line, with the script's own defaults and checks; the module's FLAGS
  is that FlagValues while main() runs. A bad input ends main() with SystemExit, its line on stderr.
  """
  import importlib  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from superres import model_flags  # pylint: disable=import-outside-toplevel
  from superres import patches  # pylint: disable=import-outside-toplevel
  from superres.runtime import tf  # pylint: disable=import-outside-toplevel

  def run(module_name, *args):
    module = importlib.import_module(module_name)
    values = flags.FlagValues()
    defining = [module, model_flags, patches]
    originals = [definer.flags for definer in defining]
    for definer in defining:
      definer.flags = _FlagsInto(values)
    try:
      module.define_flags()
    finally:
      for definer, original in zip(defining, originals):
        definer.flags = original
    values([module_name, *map(str, args)])
    global_flags, module.FLAGS = module.FLAGS, values
    try:
      with tf.Graph().as_default():
        return module.main([module_name])
    finally:
      module.FLAGS = global_flags
  return run


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory, training_images, train_in_process):
  """tiny_checkpoint(scale, channels) -> a checkpoint folder trained for 20 steps, made once per session."""
  cache = {}

  def checkpoint(scale, channels):
    if (scale, channels) not in cache:
      folder = tmp_path_factory.mktemp(f'tiny_{channels}_x{scale}')
      train_in_process(f'--data={folder / "patches.h5"}', f'--images_dir={training_images}',
                       f'--checkpoint_dir={folder / "checkpoint"}', f'--scale={scale}', f'--channels={channels}',
                       '--patch_size=6', '--stride=4', '--steps=20', '--seed=0')
      cache[scale, channels] = str(folder / 'checkpoint')
    return cache[scale, channels]
  return checkpoint


@pytest.fixture(scope='session')
def upscaler(tiny_checkpoint):
  """upscaler(scale, channels) -> inference.Upscaler restored from tiny_checkpoint(scale, channels)."""
  from superres import inference  # pylint: disable=import-outside-toplevel
  cache = {}

  def restored(scale, channels):
    if (scale, channels) not in cache:
      cache[scale, channels] = inference.Upscaler.from_checkpoint(tiny_checkpoint(scale, channels), scale,
                                                              channels)
    return cache[scale, channels]
  yield restored
  for model in cache.values():
    model.session.close()


@pytest.fixture(scope='session')
def checkpoint_network():
  """checkpoint_network(checkpoint, scale, output_activation, lr_array) -> float32 [rH, rW, C]: the network
  with the weights stored in a checkpoint file, on one image [H, W, C] in [0, 1].

  Built apart from inference.py and checkpoints.py: the six weights are read with tf.train.load_variable
  and loaded into espcn.espcn's variables in a graph of its own, so a restore that reinitialises, reads
  another checkpoint or swaps weights gives other values than this.
  """
  import espcn  # pylint: disable=import-outside-toplevel
  from superres.runtime import tf  # pylint: disable=import-outside-toplevel

  def network(checkpoint, scale, output_activation, lr_array):
    num_channels = lr_array.shape[-1]
    with tf.Graph().as_default(), tf.Session() as session:
      lr_images = tf.placeholder(tf.float32, [None, None, None, num_channels])
      sr_images = espcn.espcn(lr_images, scale, num_channels, output_activation)
      variables = tf.global_variables()
      assert len(variables) == 6, variables  # weights and bias of three convolutions
      for variable in variables:
        variable.load(tf.train.load_variable(checkpoint, variable.op.name), session)
      return session.run(sr_images, {lr_images: lr_array[None].astype(np.float32)})[0]
  return network


@pytest.fixture(scope='session')
def reference_luminance():
  """reference_luminance(pixels) -> float64 Y: ITU-R BT.601 studio range written out from the formula,
  Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, for [..., 3] RGB; a [H, W] gray image's level as it is
  (as the MATLAB scripts of the SR literature score gray images)."""
  def luminance(pixels):
    pixels = np.asarray(pixels, np.float64)
    if pixels.ndim == 2:
      return pixels
    return 16.0 + (65.481 * pixels[..., 0] + 128.553 * pixels[..., 1] + 24.966 * pixels[..., 2]) / 255.0
  return luminance


def expected_patch_count(lr_height, lr_width, patch_size, stride):
  """Patches cut from an LR image of that size: one per corner on the stride grid that fits a patch."""
  if min(lr_height, lr_width) < patch_size:
    return 0
  return ((lr_height - patch_size) // stride + 1) * ((lr_width - patch_size) // stride + 1)


@pytest.fixture(scope='session')
def patch_count():
  """patch_count(hr_width, hr_height, scale, patch_size, stride): the patches one image should give."""
  def count(hr_width, hr_height, scale, patch_size, stride):
    return expected_patch_count(hr_height // scale, hr_width // scale, patch_size, stride)
  return count

