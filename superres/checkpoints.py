"""Run folders and model folders: their layout, their checks, restoring them, their logs and model cards.

  checkpoint/
    train_data_<channels>_x<scale>.h5   patches (patches.default_data_path)
    train_<channels>_x<scale>/          a training run: train.py --checkpoint_dir (default)
      config.json                       scale, channel mode, output activation: what the weights are for
      checkpoint, espcn.ckpt-STEP.*     tf.train.Saver's state file and the two latest checkpoints
      runs.jsonl                        one line per start or resume: command, every flag's value, machine
      validation.jsonl                  one line per validation (--val_dir)
      events.out.tfevents.*             TensorBoard's events: loss, learning rate, validation (one per start)
      best/                             the best validated weights, a model folder of their own
      STARTING_POINT.md                 --init_from: whose weights it started from
    espcn_<channels>_x<scale>/          a shipped model (MODEL.md, its card, marks it): SHIPPED_MODELS

A model folder is anything with a config.json and a checkpoint: a run, its best/, or a shipped model.
`python -m tools.ship_model` turns a run's best/ into a shipped model with ship().

A run folder stays restorable whenever its process dies, even by SIGKILL in the middle of a save:
tf.train.Saver writes each checkpoint file to a temporary name and renames it when complete, then names
the new checkpoint in its state file (`checkpoint`, also written to a temporary file and renamed), and only
then deletes the oldest. So the state file only ever names complete checkpoints, and the next run resumes
from the last one it names (remove_partial_saves tidies what a killed save left). Logs are appended a
whole line at a time, and a line cut short by a kill is dropped (append_record, read_json_lines).
"""
import glob
import json
import os
import platform
import shlex
import shutil
import time

from superres.runtime import tf  # first: TensorFlow's start-up settings, before espcn imports it
import espcn
from superres import files
from superres import training

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # superres/ is one level down
SHIPPED_ROOT = os.path.join(REPO_ROOT, 'checkpoint')
SHIPPED_MODELS = (('y', 2), ('y', 3), ('rgb', 3), ('y', 4))  # (channels, scale): every espcn_* folder
PHOTO_MODEL_DIR = 'checkpoint/espcn_y_x3_jpeg'  # y x3 trained on JPEG-compressed LR: for camera and web JPEGs
CHECKPOINT_PREFIX = 'espcn.ckpt'
CONFIG_FILE = 'config.json'
OLD_PS_ORDER = 'c*r*r + q*r + p'  # phase_shift's order before it took the blog's: configs without 'ps_order'
CARD_FILE = 'MODEL.md'
RUN_LOG = 'runs.jsonl'
VALIDATION_LOG = 'validation.jsonl'
BEST_DIR = 'best'
STARTING_POINT = 'STARTING_POINT.md'


def shipped_model_dir(channels, scale):
  return os.path.join(SHIPPED_ROOT, f'espcn_{channels}_x{scale}')


def default_run_dir(channels, scale):
  return os.path.join('checkpoint', f'train_{channels}_x{scale}')


# ---------------------------------------------------------------------------------------------------------
# config.json and restoring
# ---------------------------------------------------------------------------------------------------------

def read_config_file(model_dir):
  """The config.json that train.py wrote into a folder, as it is, or None."""
  path = os.path.join(model_dir, CONFIG_FILE)
  try:
    with open(path) as stream:
      return json.load(stream)
  except FileNotFoundError:
    return None
  except (OSError, json.JSONDecodeError) as error:
    raise files.InputError(f'{path}: unreadable model config ({error})') from None


def read_config(model_dir):
  """The scale, channel mode, output activation and PS order that train.py recorded for a folder, or None.

  A folder trained before PS took the blog's channel order has no 'ps_order': its layer 3 expects the old
  order, so it is refused with the command that converts it (tools/convert_ps_order.py).
  """
  config = read_config_file(model_dir)
  if config is not None and config.get('ps_order') != espcn.PS_ORDER:
    raise files.InputError(
        f'{model_dir}: trained with the earlier PS channel order ({config.get("ps_order", OLD_PS_ORDER)}, '
        f'not {espcn.PS_ORDER}); convert it once with `python -m tools.convert_ps_order --model_dir={model_dir}`')
  return config


def latest_checkpoint(model_dir):
  """The newest checkpoint that `model_dir` names in its state file, or None (also for no such folder)."""
  return tf.train.latest_checkpoint(model_dir) if os.path.isdir(model_dir) else None


def read_trained_config(model_dir, scale, channels):
  """The config of a folder that holds a checkpoint for `scale` and `channels`, or an InputError saying what
  is wrong: no trained model there, or one for another scale or channel mode."""
  config = read_config(model_dir)
  if config is None or latest_checkpoint(model_dir) is None:
    raise files.InputError(
        f'{model_dir}: no trained checkpoint here; train one with '
        f'`python train.py --images_dir=data/T91 --scale={scale} --channels={channels}` '
        f'and pass --checkpoint_dir={default_run_dir(channels, scale)}')
  if config['scale'] != scale or config['channels'] != channels:
    raise files.InputError(
        f'{model_dir}: checkpoint is for --scale={config["scale"]} --channels={config["channels"]}, '
        f'not --scale={scale} --channels={channels}')
  return config


def restore(session, checkpoint, variables=None):
  """Restores `variables` (default: all) from a checkpoint path, or from the latest one of a folder.

  Returns the checkpoint path. A corrupt or mismatched checkpoint is one InputError line, not a traceback.
  """
  if os.path.isdir(checkpoint):
    checkpoint = latest_checkpoint(checkpoint)
  try:
    tf.train.Saver(variables).restore(session, checkpoint)
  except (tf.errors.OpError, ValueError) as error:
    raise files.InputError(f'{checkpoint}: cannot restore checkpoint ({error})') from None
  return checkpoint


# ---------------------------------------------------------------------------------------------------------
# Run folders
# ---------------------------------------------------------------------------------------------------------

def check_run_dir(run_dir, config):
  """Refuses, without writing anything, a folder that holds a shipped model or a run of other settings."""
  if os.path.exists(os.path.join(run_dir, CARD_FILE)):
    raise files.InputError(f'{run_dir}: holds a shipped model, which training never overwrites; '
                           f'pass another --checkpoint_dir')
  existing = read_config(run_dir)
  if existing not in (None, config):
    raise files.InputError(f'{run_dir}: holds a run with settings {json.dumps(existing)}, '
                           f'not {json.dumps(config)}; pass another --checkpoint_dir')


def create_run_dir(run_dir, config):
  """Creates the folder and its config, unless it holds a run already (see check_run_dir)."""
  files.ensure_writable_dir(run_dir)
  if read_config(run_dir) is None:
    files.write_json(config, os.path.join(run_dir, CONFIG_FILE))


def machine_description():
  """CPU model, core count and memory of this machine, for the run log (and so for the model cards)."""
  cpu = platform.processor() or platform.machine()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as stream:
      cpu = next((line.split(':', 1)[1].strip() for line in stream if line.startswith('model name')), cpu)
  memory_gib = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  return f'{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB'


def flag_values(options):
  """Every flag of this repo's scripts and modules and its value, given or default (not the flags that
  absl and TensorFlow define for themselves)."""
  return {flag.name: flag.value for module, module_flags in options.flags_by_module_dict().items()
          if _in_this_repo(module) for flag in module_flags}


def _in_this_repo(module):
  """Whether a module name ('superres.patches', 'tools.x') or a script path ('train.py') is a file of this repo."""
  stem = os.path.splitext(os.path.basename(module))[0] if module.endswith('.py') else module.replace('.', '/')
  return os.path.exists(os.path.join(REPO_ROOT, stem + '.py'))


def command_line(options):
  """The train.py command of this run, rebuilt from the flags it was given (right also in-process)."""
  given = [options[name].serialize() for name in options if options[name].present]
  return ' '.join(['python', 'train.py', *map(shlex.quote, given)])


def remove_partial_saves(run_dir):
  """Deletes what saves cut short by a kill left in a run folder and its best/: the temporary files of
  tf.train.Saver (checkpoint files, state file, meta graph) and of files.atomic_output. No complete
  checkpoint is touched, and the state file never names these."""
  for folder in (run_dir, best_dir(run_dir)):
    for pattern in ('*.tempstate*', 'checkpoint.tmp*', '*.meta.tmp*', '*.[0-9]*.tmp'):
      for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
        os.remove(path)


def append_record(record, path):
  """Appends a JSON record as one line to a log, first cutting off a last line that a kill left unfinished
  (it would otherwise glue onto this record and corrupt both)."""
  if os.path.exists(path):
    with open(path, 'rb+') as stream:
      content = stream.read()
      if content and not content.endswith(b'\n'):
        stream.truncate(content.rfind(b'\n') + 1)
  files.append_json_line(record, path)


def log_run(run_dir, step, total_steps, options):
  """Appends who ran what, with which flags, where and from which step to runs.jsonl (a line per start)."""
  append_record({'command': command_line(options), 'flags': flag_values(options),
                 'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'start_step': int(step),
                 'total_steps': int(total_steps), 'machine': machine_description(),
                 'tensorflow': tf.__version__},
                os.path.join(run_dir, RUN_LOG))


def log_validation(run_dir, record):
  append_record(record, os.path.join(run_dir, VALIDATION_LOG))


def read_json_lines(path):
  """The records of a JSON-lines log, or an InputError if there is no such log or an empty one.

  A last line without its newline that is not valid JSON is a write that a kill cut short: it is left out.
  """
  try:
    with open(path) as stream:
      lines = stream.read().split('\n')  # the last item: '' after a complete line, else an unfinished one
    records = [json.loads(line) for line in lines[:-1] if line.strip()]
    if lines[-1].strip():
      try:
        records.append(json.loads(lines[-1]))
      except ValueError:
        pass  # cut short by a kill
  except (OSError, ValueError) as error:
    raise files.InputError(f'{path}: not a readable train.py log ({error})') from None
  if not records:
    raise files.InputError(f'{path}: an empty train.py log')
  return records


def validation_history(records):
  """The validations of the weights a run ended with: a run resumed from a checkpoint before some of its
  validations (after a kill or a non-finite loss) validated those steps again, and the later records win."""
  history = []
  for record in records:
    while history and history[-1]['step'] >= record['step']:
      history.pop()
    history.append(record)
  return history


def best_dir(run_dir):
  return os.path.join(run_dir, BEST_DIR)


def copy_logs_to_best(run_dir):
  """best/ is a model folder of its own: it carries the run's config and run log (each copied whole)."""
  for log in (CONFIG_FILE, RUN_LOG):
    with files.atomic_output(os.path.join(best_dir(run_dir), log)) as temporary:
      shutil.copy(os.path.join(run_dir, log), temporary)


def write_starting_point(run_dir, model_dir, checkpoint, variable_names):
  """Writes STARTING_POINT.md: which weights --init_from copied, and the card of the model they came from.

  The card is copied now because the shipped model it describes may later be replaced by a better one.
  """
  lines = [f'Initialised from `{checkpoint}` (`--init_from={model_dir}`): '
           f'{", ".join(f"`{name}`" for name in variable_names)}.', '']
  card = os.path.join(model_dir, CARD_FILE)
  if os.path.exists(card):
    with open(card) as stream:
      lines += ['Its model card at the time:', '', stream.read()]
  else:
    lines += [f'`{model_dir}` had no model card; its own logs (runs.jsonl) tell how it was trained.']
  files.write_text('\n'.join(lines), os.path.join(run_dir, STARTING_POINT))


# ---------------------------------------------------------------------------------------------------------
# Shipped models and their cards (MODEL.md)
# ---------------------------------------------------------------------------------------------------------

def logged_flags(run, path):
  """The flags a runs.jsonl record logged, or an InputError for a log written before flags were logged."""
  if 'flags' not in run:
    raise files.InputError(f'{path}: a run logged before runs.jsonl recorded every flag; '
                           f'its card cannot be written from its logs')
  return run['flags']


def training_data(runs, path):
  """The data of the first run, and of every later run that changed it, with the step it started at."""
  def data(run):
    given = logged_flags(run, path)
    return (f'`--images_dir={given["images_dir"]}` prepared as `--data={given["data"] or "(default)"}` '
            f'(LR patches of {given["patch_size"]} pixels every {given["stride"]}, '
            f'`--downscales={",".join(given["downscales"])}`; '
            f'{"flips and rotations" if given["augment"] else "no augmentation"})')
  return changes_across_runs(runs, data)


def training_lr(runs, path):
  """The card's line on the compression of the training LR images (--lr_jpeg_*; runs logged before those
  flags existed trained on clean LR)."""
  def compression(run):
    given = logged_flags(run, path)
    if not given.get('lr_jpeg_quality'):
      return 'clean bicubic downscales, as the paper trains (for clean inputs, not JPEG photos)'
    low, high = given['lr_jpeg_quality'][0], given['lr_jpeg_quality'][-1]
    return (f'bicubic downscales saved as JPEG (Pillow, 4:2:0) at a quality from {low} to {high} drawn per '
            f'image and downscale, in {given["lr_jpeg_fraction"]:.0%} of the copies, the others clean '
            f'(`--lr_jpeg_quality={",".join(given["lr_jpeg_quality"])} '
            f'--lr_jpeg_fraction={given["lr_jpeg_fraction"]:g} --lr_jpeg_seed={given["lr_jpeg_seed"]}`)')
  return changes_across_runs(runs, compression)


def validation_compression(flags):
  """' with its LR as JPEG ...' for a run validated on compressed LR (--val_jpeg_quality), else ''."""
  qualities = flags.get('val_jpeg_quality')
  if not qualities:
    return ''
  return (f' with its LR images as JPEG at quality {", ".join(qualities)} (0: clean), the mean over them '
          f'(`--val_jpeg_quality={",".join(qualities)}`)')


def changes_across_runs(runs, describe):
  """describe(run) of the first run, then of each later run whose description differs, with its start step."""
  parts, previous = [], None
  for run in runs:
    description = describe(run)
    if description != previous:
      parts.append(description if previous is None else f'from step {run["start_step"]}: {description}')
      previous = description
  return '; '.join(parts)


def model_card(run_dir, config, checkpoint_name, runs, validations, starting_point, shipped_with, chosen):
  """MODEL.md: what the model is, which weights were chosen, and how exactly they were trained.

  `starting_point`: STARTING_POINT.md or ''; `shipped_with`: the ship_model command (ship_command);
  `chosen`: how the run was picked among others, the one line no log holds, or ''.
  """
  best_step = int(checkpoint_name.split('-')[-1])
  best = next((record for record in validations if record['step'] == best_step), None)
  if best is None:
    raise files.InputError(f'{run_dir}: {VALIDATION_LOG} has no score for step {best_step}')
  run_log = os.path.join(run_dir, RUN_LOG)
  first = logged_flags(runs[0], run_log)
  last = validations[-1]
  for_photos = ', for JPEG photos' if 'lr_jpeg_quality' in config else ''  # trained on compressed LR
  lines = [
      f'# ESPCN, {config["channels"]} x{config["scale"]}{for_photos}',
      '',
      f'- Network: three-layer tanh ESPCN of `espcn.py`, `--channels={config["channels"]}`, '
      f'`--scale={config["scale"]}`, `--output_activation={config["output_activation"]}`.',
      f'- Weights: `{checkpoint_name}`, the best validation PSNR of the run: '
      f'**{best["val_psnr"]:.3f} dB** (Y, border {config["scale"]}) on `{first["val_dir"]}`'
      f'{validation_compression(first)} at step '
      f'{best_step}, after {best["train_seconds"] / 60:.0f} minutes of training.',
      f'- Training data: {training_data(runs, run_log)}.',
      f'- Training LR: {training_lr(runs, run_log)}.',
      f'- Seed: {first["seed"]}. Batch size: {first["batch_size"]}.',
      f'- Learning rate: {learning_rate_schedule(first, runs[-1]["total_steps"], validations)}.',
      f'- The run was validated until step {last["step"]} ({last["train_seconds"] / 60:.0f} minutes of '
      f'training); no later weights scored higher.',
      f'- Machine: {machines(runs)}.',
      f'- Recipe: {recipe(runs, starting_point)}',
  ] + ([f'- Chosen: {chosen}'] if chosen else []) + [
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
  lines += ['Shipped with:', '', '```', shipped_with, '```', '']
  if starting_point:
    lines += ['## Starting point', '',
              'This run continued from the model below. To train it from scratch, first train that model',
              'with its own commands, then run the commands above with `--init_from` set to its folder.',
              'The training time of this model is its own plus that of the starting point.', '',
              demote_headings(starting_point), '']
  return '\n'.join(lines)


def learning_rate_schedule(flags, total_steps, validations):
  """The card's learning-rate line: --schedule=restarts's cycles, or the plateau decays as validated."""
  if flags.get('schedule') == 'restarts':
    restarts = training.Restarts(flags['cycle_steps'], flags['cycle_mult'], flags['min_learning_rate'])
    starts = ', '.join(map(str, training.cycle_starts(restarts, total_steps)))
    if not starts:
      return (f'one cosine cycle from {flags["learning_rate"]:g} down to {flags["min_learning_rate"]:g} over '
              f'{flags["cycle_steps"]} steps (`--schedule=restarts`, no restart within the run\'s {total_steps})')
    return (f'cosine cycles from {flags["learning_rate"]:g} down to {flags["min_learning_rate"]:g}, the first '
            f'{flags["cycle_steps"]} steps long, each next one {flags["cycle_mult"]:g} times as long, Adam reset '
            f'at each start (`--schedule=restarts`): warm restarts at steps {starts}')
  decays = [(record['step'], record['learning_rate'])
            for previous, record in zip(validations, validations[1:])
            if record['learning_rate'] != previous['learning_rate']]
  return f'{flags["learning_rate"]:g} at the start' + ''.join(f', {rate:g} from step {step}' for step, rate in decays)


def machines(runs):
  """The machine of the first run, and of every later run that resumed on another, with the step it started at."""
  return changes_across_runs(runs, lambda run: f'{run["machine"]}; TensorFlow {run["tensorflow"]}')


def recipe(runs, starting_point):
  """How to make this model again: one command when every start of the run was the same command."""
  commands = {run['command'] for run in runs}
  if len(commands) > 1:
    return 'the run was started with different commands, in turn (below).'
  if starting_point:
    return 'the command below, after the model it started from (Starting point).'
  return f'`{commands.pop()}`, from random initialisation (a run stopped and started again resumes).'


def demote_headings(markdown):
  """Nests a card inside another: '# Title' becomes '### Title'."""
  return '\n'.join('##' + line if line.startswith('#') else line for line in markdown.splitlines())


def read_starting_point(run_dir):
  """The run's STARTING_POINT.md (written by train.py --init_from), or '' for a run from scratch."""
  path = os.path.join(run_dir, STARTING_POINT)
  if not os.path.exists(path):
    return ''
  with open(path) as stream:
    return stream.read()


def ship_command(run_dir, destination, default_destination, chosen):
  """The tools.ship_model command that ships the run again as it is shipped now: --to if not the default
  folder, and --chosen."""
  command = f'python -m tools.ship_model --run_dir={run_dir}'
  if destination != default_destination:
    command += f' --to={destination}'
  return command + (f' --chosen={shlex.quote(chosen)}' if chosen else '')


def ship(run_dir, destination='', chosen=''):
  """Copies a run's best weights and logs, with a card written from them, to a shipped model folder.
  `chosen`: how the run was picked among others, a line of its card (model_card).

  Everything is read and checked first; the new folder is staged beside the old one and swapped in by
  renames, so a failure leaves the shipped model as it was. Returns (checkpoint, destination).
  """
  best = best_dir(run_dir)
  checkpoint = latest_checkpoint(best)
  config = read_config(run_dir)
  if checkpoint is None or config is None:
    raise files.InputError(f'{run_dir}: no best checkpoint and model config here (train with --val_dir)')
  default_destination = shipped_model_dir(config['channels'], config['scale'])
  destination = destination or default_destination
  if os.path.exists(destination) and not os.path.exists(os.path.join(destination, CARD_FILE)):
    raise files.InputError(f'{destination}: exists and is not a shipped model; not overwriting it')
  checkpoint_name = os.path.basename(checkpoint)
  card = model_card(run_dir, config, checkpoint_name, read_json_lines(os.path.join(run_dir, RUN_LOG)),
                    validation_history(read_json_lines(os.path.join(run_dir, VALIDATION_LOG))),
                    read_starting_point(run_dir), ship_command(run_dir, destination, default_destination, chosen),
                    chosen)
  staged = f'{destination}.{os.getpid()}.tmp'
  os.makedirs(staged)
  try:
    for name in os.listdir(best):
      if name.startswith(checkpoint_name + '.') or name == 'checkpoint':  # the state file names it, relatively
        shutil.copy(os.path.join(best, name), staged)
    for log in (CONFIG_FILE, RUN_LOG, VALIDATION_LOG):
      shutil.copy(os.path.join(run_dir, log), staged)
    files.write_text(card, os.path.join(staged, CARD_FILE))
    files.replace_folder(staged, destination)
  finally:
    shutil.rmtree(staged, ignore_errors=True)
  return checkpoint, destination
