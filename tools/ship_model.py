"""Ships a training run's best checkpoint as checkpoint/espcn_<channels>_x<scale>/, with its model card.

The card (MODEL.md) is written from the run's own logs, not by hand: every command that trained it
(runs.jsonl, one line per start or resume), the machine, the seed, the data, the validation images, the
learning rate as it decayed, the step and wall time of the chosen weights and their validation PSNR
(validation.jsonl), and for a run started with --init_from the card of the model it started from
(STARTING_POINT.md). The logs are shipped next to it.

  python tools/ship_model.py --run_dir=checkpoint/train_y_x3
"""
import json
import os
import shlex
import shutil
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import espcn  # pylint: disable=wrong-import-position
import generate  # pylint: disable=wrong-import-position
import train  # pylint: disable=wrong-import-position
import utils  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('run_dir', None, 'The --checkpoint_dir of a train.py run with --val_dir.')
  flags.DEFINE_string('to', '', 'Destination folder. Default: the shipped folder for the run\'s scale and '
                      'channel mode, checkpoint/espcn_<channels>_x<scale>.')
  flags.mark_flag_as_required('run_dir')


def read_json_lines(path):
  """The records of a JSON-lines log, or an InputError if the run has no such log or an empty one."""
  try:
    with open(path) as stream:
      records = [json.loads(line) for line in stream if line.strip()]
  except (OSError, ValueError) as error:
    raise utils.InputError(f'{path}: not a readable train.py log ({error})') from None
  if not records:
    raise utils.InputError(f'{path}: an empty train.py log')
  return records


def flag_value(command, name, default):
  """The value of --name in a logged train.py command line, or the flag's default."""
  for word in shlex.split(command):
    if word.startswith(f'--{name}='):
      return word.split('=', 1)[1]
  return default


def data_of(command):
  """How one logged command made its training patches."""
  return (f'`--images_dir={flag_value(command, "images_dir", "images")}` prepared as '
          f'`--data={flag_value(command, "data", "(default)")}` (LR patches of '
          f'{flag_value(command, "patch_size", "17")} pixels every {flag_value(command, "stride", "8")}, '
          f'`--downscales={flag_value(command, "downscales", "1")}`; flips and rotations unless '
          f'`--noaugment`)')


def training_data(runs):
  """The data of the first run, and of every later run that changed it, with the step it started at."""
  parts, previous = [], None
  for run in runs:
    data = data_of(run['command'])
    if data != previous:
      parts.append(data if previous is None else f'from step {run["start_step"]}: {data}')
      previous = data
  return '; '.join(parts)


def model_card(config, checkpoint_name, runs, validations, starting_point=''):
  """MODEL.md: what the model is, which weights were chosen, and how exactly they were trained."""
  best_step = int(checkpoint_name.split('-')[-1])
  chosen = next((record for record in validations if record['step'] == best_step), None)
  if chosen is None:
    raise utils.InputError(f'{FLAGS.run_dir}: {train.VALIDATION_LOG} has no score for step {best_step}')
  last = validations[-1]
  first_command = runs[0]['command']
  decays = [(record['step'], record['learning_rate'])
            for previous, record in zip(validations, validations[1:])
            if record['learning_rate'] != previous['learning_rate']]
  lines = [
      f'# ESPCN, {config["channels"]} x{config["scale"]}',
      '',
      f'- Network: three-layer tanh ESPCN of `espcn.py`, `--channels={config["channels"]}`, '
      f'`--scale={config["scale"]}`, `--output_activation={config["output_activation"]}`.',
      f'- Weights: `{checkpoint_name}`, the best validation PSNR of the run: '
      f'**{chosen["val_psnr"]:.3f} dB** (Y, border {config["scale"]}) on '
      f'`{flag_value(first_command, "val_dir", "?")}` at step {best_step}, '
      f'after {chosen["train_seconds"] / 60:.0f} minutes of training.',
      f'- Training data: {training_data(runs)}.',
      f'- Seed: {flag_value(first_command, "seed", "0")}. '
      f'Batch size: {flag_value(first_command, "batch_size", "16")}.',
      f'- Learning rate: {flag_value(first_command, "learning_rate", "0.001")} at the start'
      + ''.join(f', {rate:g} from step {step}' for step, rate in decays) + '.',
      f'- The run was validated until step {last["step"]} ({last["train_seconds"] / 60:.0f} minutes of '
      f'training); no later weights scored higher.',
      f'- Machine: {runs[0]["machine"]}; TensorFlow {runs[0]["tensorflow"]}.',
      '',
      '## Commands',
      '',
      'Each start or resume of the run, as logged in `runs.jsonl` (a resumed run continues from the latest',
      'checkpoint of its `--checkpoint_dir`, with the step count, learning rate and validation state):',
      '',
  ]
  for run in runs:
    note = f' ({run["note"]})' if 'note' in run else ''
    lines += [f'- {run["started"]}, from step {run["start_step"]}{note}:', '', '  ```', f'  {run["command"]}',
              '  ```', '']
  lines += ['Shipped with:', '', '```', f'python tools/ship_model.py --run_dir={FLAGS.run_dir}', '```', '']
  if starting_point:
    lines += ['## Starting point', '',
              'This run continued from the model below. To train it from scratch, first train that model',
              'with its own commands, then run the commands above with `--init_from` set to its folder.',
              'The training time of this model is its own plus that of the starting point.', '',
              demote_headings(starting_point), '']
  return '\n'.join(lines)


def demote_headings(markdown):
  """Nests a card inside this one: '# Title' becomes '### Title'."""
  return '\n'.join('##' + line if line.startswith('#') else line for line in markdown.splitlines())


def read_starting_point(run_dir):
  """The run's STARTING_POINT.md (written by train.py --init_from), or '' for a run from scratch."""
  path = os.path.join(run_dir, train.STARTING_POINT)
  if not os.path.exists(path):
    return ''
  with open(path) as stream:
    return stream.read()


def replace_folder(staged, destination):
  """Puts the complete folder `staged` in place of `destination` (which may not exist yet) by renames, so
  that a failure before this point leaves the shipped model as it was."""
  retired = f'{destination}.{os.getpid()}.old'
  if os.path.exists(destination):
    os.rename(destination, retired)
  os.rename(staged, destination)
  shutil.rmtree(retired, ignore_errors=True)


@utils.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  best_dir = os.path.join(FLAGS.run_dir, train.BEST_DIR)
  checkpoint = espcn.latest_checkpoint(best_dir)
  config = utils.read_model_config(FLAGS.run_dir)
  if checkpoint is None or config is None:
    raise utils.InputError(f'{FLAGS.run_dir}: no best checkpoint and model config here (train with --val_dir)')
  destination = FLAGS.to or generate.shipped_checkpoint_dir(config['channels'], config['scale'])
  if os.path.exists(destination) and not os.path.exists(os.path.join(destination, utils.MODEL_CARD_FILE)):
    raise utils.InputError(f'{destination}: exists and is not a shipped model; not overwriting it')
  checkpoint_name = os.path.basename(checkpoint)
  card = model_card(config, checkpoint_name, read_json_lines(os.path.join(FLAGS.run_dir, train.RUN_LOG)),
                    read_json_lines(os.path.join(FLAGS.run_dir, train.VALIDATION_LOG)),
                    read_starting_point(FLAGS.run_dir))
  staged = f'{destination}.{os.getpid()}.tmp'
  os.makedirs(staged)
  try:
    for name in os.listdir(best_dir):
      if name.startswith(checkpoint_name + '.') or name == 'checkpoint':  # the state file names it, relatively
        shutil.copy(os.path.join(best_dir, name), staged)
    for log in (utils.MODEL_CONFIG_FILE, train.RUN_LOG, train.VALIDATION_LOG):
      shutil.copy(os.path.join(FLAGS.run_dir, log), staged)
    utils.write_text(card, os.path.join(staged, utils.MODEL_CARD_FILE))
    replace_folder(staged, destination)
  finally:
    shutil.rmtree(staged, ignore_errors=True)
  print(f'{checkpoint} -> {destination}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
