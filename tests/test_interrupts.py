"""Stopping a run, on purpose or not: Ctrl-C and SIGTERM save the step and print the command that resumes
it; a kill at any moment, even inside a save, leaves a folder that resumes from its last saved step; a loss
that stops being finite ends the run without saving it; and data preparation and generation, interrupted,
leave no partial file. None of them prints a traceback.

Signals are sent for real: to this process (train.py's main() run in-process, the signal timed to a chosen
step by the batches) or to a script run as a subprocess.
"""
import collections
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from superres import checkpoints
from superres import files
from superres import image_files
from superres import training
from conftest import REPO_ROOT
from conftest import smooth_rgb
from superres.runtime import tf

INTERRUPT_LINE = re.compile(r'interrupted at step (\d+): saved (\S+); resume with: (python train\.py .*)')
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.fixture(scope='module')
def data(tmp_path_factory, training_images):
  """The flags of a tiny y x2 run on the session's training images (its patch file made by the first run)."""
  data_path = tmp_path_factory.mktemp('interrupts') / 'patches.h5'
  return [f'--data={data_path}', f'--images_dir={training_images}', '--scale=2', '--channels=y',
          '--patch_size=6', '--stride=4', '--batch_size=8', '--seed=3']


@pytest.fixture(scope='module')
def validation_image(tmp_path_factory):
  folder = tmp_path_factory.mktemp('interrupts_validation')
  Image.fromarray(smooth_rgb(40, 46, seed=30)).save(folder / 'val.png')
  return folder


@pytest.fixture
def sigint_raises():
  """Ctrl-C's KeyboardInterrupt in this process, as in a terminal, whatever pytest inherited (a background
  job starts with SIGINT ignored, and train.py leaves an ignored signal ignored)."""
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)


def signal_during_step(monkeypatch, signal_number, step):
  """Sends `signal_number` to this process while train.py fetches the batch of step `step` (the first
  step after a start from 0 is step 1), i.e. in the middle of the training loop."""
  batches = training.batches

  def signalling_batches(patch_data, batch_size, seed, first_step, augment_batches):
    for number, batch in enumerate(batches(patch_data, batch_size, seed, first_step, augment_batches),
                                   first_step + 1):
      if number == step:
        os.kill(os.getpid(), signal_number)
      yield batch
  monkeypatch.setattr(training, 'batches', signalling_batches)


def stored(checkpoint, name):
  return tf.train.load_variable(str(checkpoint), name)


def assert_same_weights(checkpoint, reference):
  """The network, Adam's state and the step of two checkpoints agree (up to float32 round-off)."""
  for name in ('layer1-conv1/weights', 'layer3-conv3/bias', 'beta1_power', 'global_step'):
    np.testing.assert_allclose(stored(checkpoint, name), stored(reference, name), rtol=1e-5, atol=1e-7,
                               err_msg=name)


def checkpoint_step(checkpoint):
  return int(str(checkpoint).rsplit('-', 1)[1])


# ---------------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('signal_number', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_an_interrupt_saves_its_step_and_the_command_it_prints_resumes_exactly_there(
    tmp_path, data, train_in_process, monkeypatch, capsys, sigint_raises, signal_number):
  """The signal lands during step 7 of 12 (save_every is larger): the step is finished and saved, the run
  exits with 130 or 143 and one line naming the checkpoint and the command; that command, run, resumes at
  step 7 and ends with the weights and Adam state of a run that was never interrupted."""
  run_dir = tmp_path / 'interrupted'
  signal_during_step(monkeypatch, signal_number, 7)
  with pytest.raises(SystemExit) as exit_info:
    train_in_process(*data, f'--checkpoint_dir={run_dir}', '--steps=12', '--save_every=100')
  assert exit_info.value.code == EXIT_CODES[signal_number]
  last_line = capsys.readouterr().err.splitlines()[-1]
  match = INTERRUPT_LINE.fullmatch(last_line)
  assert match, last_line
  assert int(match[1]) == 7 and match[2] == str(run_dir / 'espcn.ckpt-7')
  assert tf.train.latest_checkpoint(str(run_dir)) == match[2] and stored(match[2], 'global_step') == 7
  monkeypatch.undo()  # no more signals

  command = shlex.split(match[3])
  train_in_process(*command[2:])
  assert f'resuming {run_dir / "espcn.ckpt-7"} at step 7 of 12' in capsys.readouterr().out
  reference_dir = tmp_path / 'uninterrupted'
  train_in_process(*data, f'--checkpoint_dir={reference_dir}', '--steps=12', '--save_every=100')
  assert_same_weights(run_dir / 'espcn.ckpt-12', reference_dir / 'espcn.ckpt-12')


# Restores SIGINT's default action, then becomes the script: an exec keeps a default action (and an ignored
# signal ignored), and Python then turns SIGINT into KeyboardInterrupt as in a terminal.
WITH_SIGINT = ('import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); '
               'os.execv(sys.executable, [sys.executable, *sys.argv[1:]])')


def run_in_background(script, *args, stderr):
  """Starts a script as a user would from a terminal: unbuffered, SIGINT not ignored (this test process may
  run as a background job, whose children inherit an ignored SIGINT)."""
  return subprocess.Popen(
      [sys.executable, '-c', WITH_SIGINT, str(REPO_ROOT / script), *map(str, args)], cwd=REPO_ROOT, text=True,
      stdout=subprocess.PIPE, stderr=stderr, env=dict(os.environ, PYTHONUNBUFFERED='1'))


def wait_for_line(process, text):
  """Reads the process's stdout until a line contains `text`; returns what was read."""
  lines = []
  while not lines or text not in lines[-1]:
    line = process.stdout.readline()
    assert line, f'the process ended before printing {text!r}:\n{"".join(lines)}'
    lines.append(line)
  return ''.join(lines)


def message_lines(stderr):
  """stderr less tqdm's progress bar (its updates are separated by carriage returns)."""
  return [line for line in re.split(r'[\r\n]', stderr) if line.strip() and not re.search(r'\d+%\|', line)]


def test_ctrl_c_in_a_training_process_exits_130_with_one_line_whose_command_resumes_there(tmp_path, data):
  """A real train.py process and a real Ctrl-C (SIGINT), half a second into its training loop. Its command
  is run again with a smaller --steps, the only change, to end quickly: it resumes at the saved step."""
  run_dir = tmp_path / 'run'
  stderr_path = tmp_path / 'stderr.txt'
  with open(stderr_path, 'w') as stderr:
    process = run_in_background('train.py', *data, f'--checkpoint_dir={run_dir}', '--steps=1000000',
                                stderr=stderr)
    try:
      wait_for_line(process, 'at step 0 of 1000000')
      time.sleep(0.5)
      process.send_signal(signal.SIGINT)
      process.wait(timeout=120)
    finally:
      process.kill()
  stderr = stderr_path.read_text()
  assert process.returncode == 130, stderr
  assert 'Traceback' not in stderr
  lines = message_lines(stderr)
  assert len(lines) == 1, stderr
  match = INTERRUPT_LINE.fullmatch(lines[0])
  assert match, lines
  step = int(match[1])
  assert step > 0 and tf.train.latest_checkpoint(str(run_dir)) == match[2] == str(run_dir / f'espcn.ckpt-{step}')

  command = shlex.split(match[3])
  assert command[:2] == ['python', 'train.py']
  resumed = subprocess.run([sys.executable, *command[1:], f'--steps={step + 3}'], cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=300, check=False)
  assert resumed.returncode == 0, resumed.stderr
  assert f'resuming {match[2]} at step {step} of {step + 3}' in resumed.stdout
  assert tf.train.latest_checkpoint(str(run_dir)).endswith(f'espcn.ckpt-{step + 3}')


def test_sigterm_during_data_preparation_leaves_no_file_and_no_traceback(tmp_path):
  """prepare_data.py gets SIGTERM while it writes its temporary patch file: it exits with 143 and one line,
  and neither the temporary file nor the output is left."""
  images = tmp_path / 'images'
  images.mkdir()
  for index in range(60):
    Image.fromarray(smooth_rgb(200, 200, seed=index)).save(images / f'image{index}.png')
  output_dir = tmp_path / 'out'
  output_dir.mkdir()
  stderr_path = tmp_path / 'stderr.txt'
  with open(stderr_path, 'w') as stderr:
    process = run_in_background('prepare_data.py', f'--images_dir={images}',
                                f'--output={output_dir / "patches.h5"}', '--scale=2', '--patch_size=8',
                                '--stride=4', '--downscales=1,0.8,0.6', stderr=stderr)
    try:
      deadline = time.time() + 60
      while not list(output_dir.glob('*.tmp')):  # the preparation has begun
        assert process.poll() is None, 'prepare_data.py ended before it was interrupted'
        assert time.time() < deadline
        time.sleep(0.002)
      process.send_signal(signal.SIGTERM)
      process.wait(timeout=60)
    finally:
      process.kill()
  stderr = stderr_path.read_text()
  assert process.returncode == 143, stderr
  assert message_lines(stderr) == ['interrupted by SIGTERM'], stderr
  assert list(output_dir.iterdir()) == []


def test_ctrl_c_while_train_py_prepares_its_data_leaves_no_data_file_and_no_run_folder(
    tmp_path, training_images, train_in_process, monkeypatch, capsys, sigint_raises):
  load_image = image_files.load_image
  loaded = []

  def interrupted_load(path):
    loaded.append(path)
    if len(loaded) == 2:
      os.kill(os.getpid(), signal.SIGINT)
    return load_image(path)
  monkeypatch.setattr(image_files, 'load_image', interrupted_load)
  with pytest.raises(SystemExit) as exit_info:
    train_in_process(f'--data={tmp_path / "data" / "patches.h5"}', f'--images_dir={training_images}',
                     f'--checkpoint_dir={tmp_path / "run"}', '--steps=5')
  assert exit_info.value.code == 130
  assert capsys.readouterr().err.splitlines()[-1] == 'interrupted by SIGINT'
  assert len(loaded) == 2
  assert sorted(path.name for path in tmp_path.iterdir()) == ['data']  # the folder train.py made for --data
  assert list((tmp_path / 'data').iterdir()) == []


def test_ctrl_c_while_generate_py_writes_an_image_leaves_the_finished_ones_and_no_partial_file(
    tmp_path, tiny_checkpoint, main_in_process, monkeypatch, capsys, sigint_raises):
  """Three inputs; Ctrl-C arrives while the second PNG is being written: the first is complete, the second
  never appears (neither under its name nor as a temporary file), the third is not started."""
  inputs = tmp_path / 'inputs'
  inputs.mkdir()
  for index in range(3):
    Image.fromarray(smooth_rgb(20, 24, seed=index)).save(inputs / f'photo{index}.png')
  write_png = image_files.write_png
  written = []

  def interrupted_write(*args, **kwargs):
    write_png(*args, **kwargs)
    written.append(args)
    if len(written) == 2:  # the PNG is in its temporary file, not yet renamed
      os.kill(os.getpid(), signal.SIGINT)
  monkeypatch.setattr(image_files, 'write_png', interrupted_write)
  output_dir = tmp_path / 'result'
  with pytest.raises(SystemExit) as exit_info:
    main_in_process('generate', f'--input={inputs}', f'--output_dir={output_dir}',
                    f'--checkpoint_dir={tiny_checkpoint(2, "rgb")}', '--scale=2', '--channels=rgb')
  assert exit_info.value.code == 130
  assert capsys.readouterr().err.splitlines()[-1] == 'interrupted by SIGINT'
  assert [path.name for path in output_dir.iterdir()] == ['photo0_x2.png']
  assert Image.open(output_dir / 'photo0_x2.png').size == (48, 40)


# ---------------------------------------------------------------------------------------------------------
# SIGKILL
# ---------------------------------------------------------------------------------------------------------

def assert_restorable(run_dir):
  """What a resumed run reads is whole: the checkpoints the state files name (the run's and best/'s) hold
  every variable and the step of their name, and the logs parse."""
  for folder in (run_dir, checkpoints.best_dir(run_dir)):
    state = tf.train.get_checkpoint_state(str(folder))
    for checkpoint in ([] if state is None else state.all_model_checkpoint_paths):
      names = dict(tf.train.list_variables(checkpoint))
      assert 'layer3-conv3/weights' in names and 'beta1_power' in names, checkpoint
      assert stored(checkpoint, 'global_step') == checkpoint_step(checkpoint)
  checkpoints.read_config(run_dir)
  for log in (checkpoints.RUN_LOG, checkpoints.VALIDATION_LOG):
    if (run_dir / log).exists():
      checkpoints.read_json_lines(run_dir / log)


def latest_step(run_dir):
  latest = tf.train.latest_checkpoint(str(run_dir))
  return None if latest is None else checkpoint_step(latest)


@pytest.mark.slow
def test_sigkill_at_random_moments_even_inside_saves_never_loses_a_saved_step(
    tmp_path, data, validation_image):
  """train.py saves every step (saves take most of its loop's time, so kills land inside them too: in the
  middle of a save, the state file names the new checkpoint and its .meta file is not written yet),
  validates every 3 steps into best/ and writes events every step. Each run is killed with SIGKILL at a
  seeded random moment within a second of its first save (its loop runs by then). After each kill the
  folder is restorable, and the next run resumes at the step of the newest checkpoint the state file names;
  the last run completes, and the event files hold each step at most once per tag, in order."""
  run_dir = tmp_path / 'run'
  args = [*data, f'--checkpoint_dir={run_dir}', '--save_every=1', '--summary_every=1',
          f'--val_dir={validation_image}', '--val_every=3', '--decay_patience=100000']  # (no early stop)
  rng = random.Random(20)
  for _ in range(4):
    before = latest_step(run_dir)
    process = run_in_background('train.py', *args, '--steps=100000', stderr=subprocess.DEVNULL)
    try:
      started = wait_for_line(process, 'of 100000')
      while latest_step(run_dir) == before:  # its first save: the loop runs
        assert process.poll() is None, 'train.py ended before it was killed'
        time.sleep(0.005)
      time.sleep(rng.uniform(0.0, 1.0))
    finally:
      process.kill()  # SIGKILL
      process.wait()
    expected = 'starting at step 0' if before is None else f'resuming {run_dir}/espcn.ckpt-{before} at step {before}'
    assert expected in started
    assert_restorable(run_dir)
  last = latest_step(run_dir)
  final = subprocess.run([sys.executable, 'train.py', *args, f'--steps={last + 2}'], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300, check=False)
  assert final.returncode == 0, final.stderr
  assert f'resuming {run_dir}/espcn.ckpt-{last} at step {last} of {last + 2}' in final.stdout
  assert latest_step(run_dir) == last + 2
  assert not [path for path in run_dir.rglob('*') if 'tempstate' in path.name or path.name.endswith('.tmp')]
  steps = collections.defaultdict(list)
  for path in sorted(run_dir.glob('events.out.tfevents.*')):
    try:
      for event in tf.train.summary_iterator(str(path)):
        for value in event.summary.value:
          steps[value.tag].append(event.step)
    except tf.errors.DataLossError:
      pass  # the last record of a file, cut short by a kill
  assert steps['loss'][-1] == last + 2 and steps['validation/psnr']
  for tag, tag_steps in steps.items():
    assert all(later > earlier for earlier, later in zip(tag_steps, tag_steps[1:])), (tag, tag_steps)


def test_a_save_cut_short_is_ignored_and_its_leftovers_removed(tmp_path, data, train_in_process, capsys):
  """What a kill inside the save of step 4 leaves: a data file and a state file naming step 4, both under
  their temporary names. The next run resumes from step 3, which the state file still names, and tidies."""
  run_dir = tmp_path / 'run'
  train_in_process(*data, f'--checkpoint_dir={run_dir}', '--steps=3')
  (run_dir / 'espcn.ckpt-4.data-00000-of-00001.tempstate123').write_bytes(b'half a checkpoint')
  (run_dir / 'checkpoint.tmp0123abcd').write_text('model_checkpoint_path: "espcn.ckpt-4"\n')
  (run_dir / 'best').mkdir()
  (run_dir / 'best' / 'runs.jsonl.1234.tmp').write_text('{"comm')
  capsys.readouterr()
  train_in_process(*data, f'--checkpoint_dir={run_dir}', '--steps=5')
  assert f'resuming {run_dir / "espcn.ckpt-3"} at step 3 of 5' in capsys.readouterr().out
  assert not [path for path in run_dir.rglob('*') if 'tmp' in path.name or 'tempstate' in path.name]


def test_a_log_line_cut_short_by_a_kill_is_dropped_and_the_next_record_starts_a_line_of_its_own(tmp_path):
  log = tmp_path / 'validation.jsonl'
  log.write_text('{"step": 5, "val_psnr": 20.0}\n{"step": 10, "val_psnr": 21.0}\n{"step": 15, "val_ps')
  assert [record['step'] for record in checkpoints.read_json_lines(log)] == [5, 10]
  checkpoints.append_record({'step': 15, 'val_psnr': 22.0}, log)
  assert log.read_text().splitlines()[-1] == '{"step": 15, "val_psnr": 22.0}'
  assert [record['step'] for record in checkpoints.read_json_lines(log)] == [5, 10, 15]
  log.write_text('{"step": 5}\n{"step": 10, "val_ps\n{"step": 15}\n')  # not a kill: damage inside the log
  with pytest.raises(files.InputError, match='not a readable train.py log'):
    checkpoints.read_json_lines(log)


def test_a_run_killed_between_validations_and_saves_ships_with_the_history_it_resumed(
    tmp_path, data, validation_image, train_in_process):
  """Validated at 2, 4, 6 and saved at 3 and 6, killed after the validation of 8 (here: its checkpoint
  files deleted, a torn line added), the run resumes at 6 and validates 8 and 10 again. The card reads the
  history of the weights shipped, each step once: the validations of 8 before the kill are not it."""
  run_dir = tmp_path / 'run'
  args = [*data, f'--checkpoint_dir={run_dir}', f'--val_dir={validation_image}', '--val_every=2',
          '--save_every=3']
  train_in_process(*args, '--steps=8')
  for path in run_dir.glob('espcn.ckpt-8.*'):
    path.unlink()
  (run_dir / 'checkpoint').write_text('model_checkpoint_path: "espcn.ckpt-6"\n'
                                      'all_model_checkpoint_paths: "espcn.ckpt-6"\n')
  with open(run_dir / checkpoints.VALIDATION_LOG, 'a') as log:
    log.write('{"step": 10, "val_psnr"')
  train_in_process(*args, '--steps=10')
  logged = checkpoints.read_json_lines(run_dir / checkpoints.VALIDATION_LOG)
  assert [record['step'] for record in logged] == [2, 4, 6, 8, 8, 10]
  history = checkpoints.validation_history(logged)
  assert [record['step'] for record in history] == [2, 4, 6, 8, 10] and history[3] is logged[4]
  checkpoints.ship(str(run_dir), str(tmp_path / 'model'))
  card = (tmp_path / 'model' / checkpoints.CARD_FILE).read_text()
  assert 'validated until step 10' in card


# ---------------------------------------------------------------------------------------------------------
# Non-finite loss
# ---------------------------------------------------------------------------------------------------------

NON_FINITE_LINE = re.compile(r'error: step (\d+): (loss is (?:nan|inf)|the updated weights give a loss of '
                             r'(?:nan|inf)|the weights are no longer finite); (.*)')


def event_steps(run_dir):
  """The step of every summary in the run's event files, in the order TensorBoard reads them."""
  return [event.step for path in sorted(run_dir.glob('events.out.tfevents.*'))
          for event in tf.train.summary_iterator(str(path)) if event.summary.value]


def test_a_non_finite_loss_stops_the_run_at_its_step_and_a_lower_rate_resumes_it(
    tmp_path, data, validation_image, train_in_process, capsys):
  """Six good steps at 1e-3, then --learning_rate=1e30 (--schedule=restarts takes the flag as it is): the
  first update sends the weights to about 1e30, and the network (no tanh after PS) to an infinite loss. The
  run stops with one line naming the step, saves nothing of it (checkpoints, best/, events), and resumes
  from the last good checkpoint with the rate it was given."""
  run_dir = tmp_path / 'run'
  args = [*data, f'--checkpoint_dir={run_dir}', '--output_activation=none', '--schedule=restarts',
          '--save_every=3', f'--val_dir={validation_image}', '--val_every=2', '--summary_every=1']
  train_in_process(*args, '--steps=6')
  best_before = tf.train.latest_checkpoint(str(run_dir / 'best'))
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    train_in_process(*args, '--steps=20', '--learning_rate=1e30')
  assert exit_info.value.code == 1
  error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error: ')]
  assert len(error_lines) == 1
  match = NON_FINITE_LINE.fullmatch(error_lines[0])
  assert match, error_lines
  assert (match[1], match[2]) == ('8', 'loss is inf')  # the update of step 7 diverged; step 8 computes its loss
  assert match[3] == f'the last good checkpoint is {run_dir / "espcn.ckpt-6"}: resume from it with a ' \
                     f'--learning_rate below 1e+30'
  assert latest_step(run_dir) == 6 and not list(run_dir.glob('espcn.ckpt-[78].*'))
  assert tf.train.latest_checkpoint(str(run_dir / 'best')) == best_before
  for checkpoint in (run_dir / 'espcn.ckpt-6', best_before):
    for name, _ in tf.train.list_variables(str(checkpoint)):
      assert np.all(np.isfinite(stored(checkpoint, name))), name
  assert max(event_steps(run_dir)) == 6  # the events of steps 7 and 8 were not written

  train_in_process(*args, '--steps=10', '--learning_rate=1e-4')
  assert f'resuming {run_dir / "espcn.ckpt-6"} at step 6 of 10' in capsys.readouterr().out
  assert latest_step(run_dir) == 10
  steps = event_steps(run_dir)
  assert sorted(set(steps)) == list(range(1, 11))  # every step once per tag, in order
  assert all(later >= earlier for earlier, later in zip(steps, steps[1:]))


def test_weights_that_diverged_in_the_step_before_a_save_are_not_saved(tmp_path, data, train_in_process, capsys):
  """The loss of step 1 is that of the initial weights, finite; its update diverges, and the save of step 1
  checks the updated weights first: nothing is saved, and the line says to start again."""
  run_dir = tmp_path / 'run'
  with pytest.raises(SystemExit) as exit_info:
    train_in_process(*data, f'--checkpoint_dir={run_dir}', '--output_activation=none', '--steps=20',
                     '--save_every=1', '--summary_every=1', '--learning_rate=1e30')
  assert exit_info.value.code == 1
  last_line = capsys.readouterr().err.splitlines()[-1]
  assert last_line == ('error: step 1: the updated weights give a loss of inf; no checkpoint was saved: start '
                       'again with a --learning_rate below 1e+30')
  assert latest_step(run_dir) is None and not list(run_dir.glob('events.*'))


def test_a_lower_learning_rate_replaces_the_restored_one_and_the_same_command_keeps_a_decayed_one(
    tmp_path, data, train_in_process, capsys):
  """--schedule=plateau keeps its (possibly decayed) rate in the checkpoint: a resumed run takes a
  --learning_rate only if it is lower than that rate, with a patience of its own."""
  run_dir = tmp_path / 'run'
  args = [*data, f'--checkpoint_dir={run_dir}']
  train_in_process(*args, '--steps=2', '--learning_rate=1e-3')
  train_in_process(*args, '--steps=4', '--learning_rate=1e-4')
  assert 'learning rate 0.001 lowered to 0.0001 (--learning_rate)' in capsys.readouterr().out
  assert stored(run_dir / 'espcn.ckpt-4', 'learning_rate') == np.float32(1e-4)
  assert stored(run_dir / 'espcn.ckpt-4', 'decay_step') == 2
  train_in_process(*args, '--steps=6', '--learning_rate=1e-3')  # the first command again, further
  assert 'lowered' not in capsys.readouterr().out
  assert stored(run_dir / 'espcn.ckpt-6', 'learning_rate') == np.float32(1e-4)
