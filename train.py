"""Trains ESPCN on the patch pairs that prepare_data.py writes: MSE loss, Adam, tf.train.Saver checkpoints.

Every epoch visits every patch once, in a fresh random order (seeded by --seed and the epoch, so a resumed
run sees the same order as an uninterrupted one). If --data does not exist yet it is prepared first from
--images_dir, as the blog's train.py does. A run resumes from the latest checkpoint in --checkpoint_dir and
continues its step count; --epochs/--steps give the total to reach, not the number to add.

  python train.py --images_dir=../shared/data/T91 --scale=3 --channels=rgb --epochs=100
"""
import collections
import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import time
from typing import NamedTuple

import numpy as np
from absl import app
from absl import flags
from tqdm import tqdm

import espcn
import prepare_data
import utils
from espcn import tf

FLAGS = flags.FLAGS


def define_flags():
  """The command line, defined only when run as a script so that other scripts and tests can import it."""
  flags.DEFINE_string('data', '', 'HDF5 patch file. Default: checkpoint/train_data_<channels>_x<scale>.h5')
  flags.DEFINE_string('checkpoint_dir', '',
                      'Where checkpoints go. Default: checkpoint/train_<channels>_x<scale>')
  utils.define_model_flags()
  prepare_data.define_patch_flags()  # what --data is prepared from when it does not exist yet
  flags.adopt_module_key_flags(utils)
  flags.adopt_module_key_flags(prepare_data)
  flags.DEFINE_enum('output_activation', 'tanh', espcn.OUTPUT_ACTIVATIONS,
                    "Activation after PS: 'tanh' as the blog, 'none' as the paper.")
  flags.DEFINE_integer('batch_size', 16, 'Patches per training step.', lower_bound=1)
  flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate.', lower_bound=0)
  flags.DEFINE_integer('epochs', 100, 'Train until this many epochs (passes over all patches) are done.',
                       lower_bound=1)
  flags.DEFINE_integer('steps', 0, 'If > 0: train until this many steps are done, instead of --epochs.',
                       lower_bound=0)
  flags.DEFINE_integer('save_every', 1000, 'Save a checkpoint every this many steps (and at the end).',
                       lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Seed of the weight initialisation, the patch order and the augmentation.')
  flags.DEFINE_float('max_memory', 4096, 'MiB of patches to hold in memory: a larger --data file is '
                     'streamed from disk in shuffled blocks of chunks.', lower_bound=0)
  flags.DEFINE_integer('threads', 0, 'CPU threads per operation (0: all cores). Two runs side by side '
                       'on a 2-core machine: 1 each.', lower_bound=0)
  flags.DEFINE_string('init_from', '', 'A model folder to start from, wherever its weights have the '
                      "same shapes (e.g. another scale's layers 1 and 2). Empty: random initialisation.")
  flags.DEFINE_integer('loss_border', 0, 'LR pixels on each side of a patch left out of the loss (their '
                       'outputs see the convolutions\' zero padding; the receptive radius is 4).',
                       lower_bound=0)
  flags.DEFINE_bool('augment', True, 'Apply a random flip/90-degree rotation to each batch.')
  flags.DEFINE_float('last_layer_lr_scale', 1.0,
                     'Learning rate of the last layer relative to the others (the paper uses 0.1).',
                     lower_bound=0)
  flags.DEFINE_string('val_dir', '', 'Validation images (never Set5/Set14), named as --images_dir names them '
                      '(e.g. the glob BSD200/*0.png): scored every --val_every steps; '
                      'the best weights are kept in <checkpoint_dir>/best. Empty: no validation.')
  flags.DEFINE_integer('val_every', 2000, 'Steps between validations.', lower_bound=1)
  flags.DEFINE_integer('decay_patience', 5, 'Validations without improvement before the learning rate '
                       'is multiplied by --decay_factor.', lower_bound=1)
  flags.DEFINE_float('decay_factor', 0.1, 'Learning-rate decay factor on a validation plateau.',
                     lower_bound=0, upper_bound=1)
  flags.DEFINE_float('min_improvement', 0.005, 'Validation PSNR gain (dB) that restarts the patience (any '
                     'gain still makes new best weights).')
  flags.DEFINE_float('min_learning_rate', 1e-5,
                     'Stop (early) when a decay would take the learning rate below this.')


CHECKPOINT_PREFIX = 'espcn.ckpt'
BEST_DIR = 'best'  # the checkpoint with the best validation PSNR, a model folder of its own
VALIDATION_LOG = 'validation.jsonl'
RUN_LOG = 'runs.jsonl'
STARTING_POINT = 'STARTING_POINT.md'  # written by --init_from: where the weights started


def default_checkpoint_dir(channels, scale):
  return os.path.join('checkpoint', f'train_{channels}_x{scale}')


class TrainingGraph(NamedTuple):
  """The tensors and ops that the training loop feeds, runs and updates."""
  lr_patches: tf.Tensor  # placeholder [N, p, p, C]; also takes whole LR images for validation
  hr_patches: tf.Tensor  # placeholder [N, rp, rp, C]
  sr_patches: tf.Tensor  # [N, rp, rp, C]
  loss: tf.Tensor
  train_op: tf.Operation
  global_step: tf.Variable
  learning_rate: tf.Variable  # decayed by the loop when the validation PSNR stops improving
  best_val_psnr: tf.Variable  # the rest of the loop's state, saved with every checkpoint: the best score
  improved_step: tf.Variable  # the last validation that beat the best by --min_improvement
  decay_step: tf.Variable  # when the learning rate was last decayed: each rate gets its own patience
  train_seconds: tf.Variable


def build_training_graph(scale, num_channels, output_activation, learning_rate, last_layer_lr_scale,
                         loss_border=0):
  """Placeholders for patch batches, the network, its MSE loss and one Adam step.

  With `loss_border` > 0 the loss leaves out that many LR pixels (r times as many HR pixels) on each side
  of the patch: the outputs there see the zero padding of the 'SAME' convolutions, which whole images only
  have at their own borders.

  The paper trains the last layer (layer3, just before PS) with a smaller learning rate; the hidden layers
  and the last layer therefore get Adam optimizers of their own (identical to one Adam when the scale is 1).
  """
  lr_patches = tf.placeholder(tf.float32, [None, None, None, num_channels], name='lr_patches')  # [N, p, p, C]
  hr_patches = tf.placeholder(tf.float32, [None, None, None, num_channels],
                              name='hr_patches')  # [N, rp, rp, C]
  sr_patches = espcn.espcn(lr_patches, scale, num_channels, output_activation)  # [N, rp, rp, C]
  crop = loss_border * scale
  inside = (slice(None), slice(crop, -crop or None), slice(crop, -crop or None))
  loss = tf.reduce_mean(tf.square(sr_patches[inside] - hr_patches[inside]))
  global_step = tf.train.get_or_create_global_step()
  rate = tf.Variable(learning_rate, trainable=False, name='learning_rate', dtype=tf.float32)
  last_layer = tf.trainable_variables('layer3-conv3')
  hidden_layers = [variable for variable in tf.trainable_variables() if variable not in last_layer]
  train_op = tf.group(
      tf.train.AdamOptimizer(rate).minimize(loss, var_list=hidden_layers, global_step=global_step),
      tf.train.AdamOptimizer(rate * last_layer_lr_scale, name='AdamLastLayer').minimize(
          loss, var_list=last_layer))
  state = [tf.Variable(value, trainable=False, name=name, dtype=dtype) for name, value, dtype in
           (('best_val_psnr', 0.0, tf.float32),
            ('best_step', 0, tf.int64),  # improved_step; the name stays so that older checkpoints restore
            ('decay_step', 0, tf.int64),
            ('train_seconds', 0.0, tf.float64))]
  return TrainingGraph(lr_patches, hr_patches, sr_patches, loss, train_op, global_step, rate, *state)


def check_checkpoint_dir(checkpoint_dir, config):
  """Refuses, without writing anything, a folder that holds a shipped model or a run of other settings."""
  if os.path.exists(os.path.join(checkpoint_dir, utils.MODEL_CARD_FILE)):
    raise utils.InputError(f'{checkpoint_dir}: holds a shipped model, which training never overwrites; '
                           f'pass another --checkpoint_dir')
  existing = utils.read_model_config(checkpoint_dir)
  if existing not in (None, config):
    raise utils.InputError(f'{checkpoint_dir}: holds a run with settings {json.dumps(existing)}, '
                           f'not {json.dumps(config)}; pass another --checkpoint_dir')


def create_checkpoint_dir(checkpoint_dir, config):
  """Creates the folder and its config, unless it holds a run already (see check_checkpoint_dir)."""
  utils.ensure_writable_dir(checkpoint_dir)
  if utils.read_model_config(checkpoint_dir) is None:
    utils.write_json(config, os.path.join(checkpoint_dir, utils.MODEL_CONFIG_FILE))


def augment(lr_batch, hr_batch, rng):
  """One of the 8 flips/90-degree rotations, drawn by `rng`, applied alike to the LR and HR batch."""
  quarter_turns, flip = rng.integers(4), rng.integers(2)
  lr_batch, hr_batch = (np.rot90(batch, quarter_turns, axes=(1, 2)) for batch in (lr_batch, hr_batch))
  return (lr_batch[:, :, ::-1], hr_batch[:, :, ::-1]) if flip else (lr_batch, hr_batch)


def batches(patches, batch_size, seed, first_step, augment_batches):
  """Yields (lr_batch, hr_batch) as float32 in [0, 1], from step `first_step` on, epoch after epoch.

  Each epoch visits every patch once; the order and the augmentation depend only on the seed, the epoch
  and the step, so a resumed run continues exactly as an uninterrupted one would.
  """
  steps_per_epoch = math.ceil(len(patches) / batch_size)
  epoch, offset = divmod(first_step, steps_per_epoch)
  while True:
    order = patches.epoch_order(np.random.default_rng([seed, epoch]))
    for start in range(offset * batch_size, len(order), batch_size):
      lr_batch, hr_batch = patches.read(np.sort(order[start:start + batch_size]))
      if augment_batches:
        lr_batch, hr_batch = augment(lr_batch, hr_batch, np.random.default_rng([seed, epoch, start]))
      yield lr_batch.astype(np.float32) / 255.0, hr_batch.astype(np.float32) / 255.0
    epoch, offset = epoch + 1, 0


def machine_description():
  """CPU model, core count and memory of this machine, for the run log (and so for the model cards)."""
  cpu = platform.processor() or platform.machine()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as stream:
      cpu = next((line.split(':', 1)[1].strip() for line in stream if line.startswith('model name')), cpu)
  memory_gib = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  return f'{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB'


def command_line(options):
  """The train.py command of this run, rebuilt from the flags it was given (right also in-process)."""
  given = [options[name].serialize() for name in options if options[name].present]
  return ' '.join(['python', 'train.py', *map(shlex.quote, given)])


def log_run_segment(checkpoint_dir, step, total_steps, options):
  """Appends who ran what, where and from which step to <checkpoint_dir>/runs.jsonl (one line per start)."""
  utils.append_json_line({'command': command_line(options),
                          'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'start_step': int(step),
                          'total_steps': int(total_steps), 'machine': machine_description(),
                          'tensorflow': tf.__version__},
                         os.path.join(checkpoint_dir, RUN_LOG))


def load_validation_pairs(val_dir, scale):
  """The validation images as (LR, HR) uint8 arrays, made exactly as the evaluation makes them."""
  paths = utils.list_images(val_dir)
  for path in paths:
    if os.path.basename(os.path.dirname(os.path.abspath(path))).lower() in ('set5', 'set14'):
      raise utils.InputError(f'{path}: Set5 and Set14 are test sets; validate on other images '
                             f'(e.g. ../shared/data/General100)')
  pairs = [utils.ground_truth_pair(path, scale) for path in paths]
  return [(np.asarray(lr_image), np.asarray(hr_image)) for lr_image, hr_image in pairs]


def validate(upscaler, val_pairs):
  """Mean Y-PSNR of the current weights on the validation pairs (the evaluation protocol of generate.py)."""
  return float(np.mean([utils.psnr_y(hr, upscaler.upscale(lr), upscaler.scale) for lr, hr in val_pairs]))


class Trainer:
  """The training loop and its state: resume, step, validate, decay the learning rate, save, stop."""

  def __init__(self, graph, session, checkpoint_dir, config, options):
    self.graph, self.session, self.options = graph, session, options
    self.checkpoint_dir = checkpoint_dir
    self.saver = tf.train.Saver(max_to_keep=2, save_relative_paths=True)
    self.best_saver = tf.train.Saver(max_to_keep=1, save_relative_paths=True)
    self.upscaler = espcn.Upscaler(session, config['scale'], config['channels'], config['output_activation'])
    self.segment_started = time.time()
    self.seconds_before = 0.0

  def restore_or_initialize(self):
    """Restores the latest checkpoint (weights, Adam, step, learning rate, best score) or starts afresh."""
    latest = tf.train.latest_checkpoint(self.checkpoint_dir)
    if latest:
      self.saver.restore(self.session, latest)
    else:
      self.session.run(tf.global_variables_initializer())
      if self.options.init_from:
        self.copy_layers_from(self.options.init_from)
    self.seconds_before = self.session.run(self.graph.train_seconds)
    self.segment_started = time.time()
    return latest

  def copy_layers_from(self, model_dir):
    """Starts from another model's weights wherever the shapes agree (e.g. layers 1-2 of another scale).

    Only the network's weights are taken; Adam's moments, the step and the schedule start afresh.
    """
    checkpoint = espcn.latest_checkpoint(model_dir)
    if checkpoint is None:
      raise utils.InputError(f'{model_dir}: no checkpoint to initialise from (--init_from)')
    try:
      shapes = dict(tf.train.list_variables(checkpoint))
      matching = [variable for variable in tf.trainable_variables()
                  if shapes.get(variable.op.name) == variable.shape.as_list()]
      if not matching:
        raise utils.InputError(f'{checkpoint}: no weights of this network\'s shapes to start from (--init_from)')
      tf.train.Saver(matching).restore(self.session, checkpoint)
    except (tf.errors.OpError, ValueError) as error:
      raise utils.InputError(f'{checkpoint}: cannot restore checkpoint ({error})') from None
    tqdm.write(f'initialised {", ".join(variable.op.name for variable in matching)} from {checkpoint}')
    self.record_starting_point(model_dir, checkpoint, matching)

  def record_starting_point(self, model_dir, checkpoint, variables):
    """Writes STARTING_POINT.md: which weights were copied, and the card of the model they came from.

    The card is copied now because the shipped model it describes may later be replaced by a better one.
    """
    lines = [f'Initialised from `{checkpoint}` (`--init_from={model_dir}`): '
             f'{", ".join(f"`{variable.op.name}`" for variable in variables)}.', '']
    card = os.path.join(model_dir, utils.MODEL_CARD_FILE)
    if os.path.exists(card):
      with open(card) as stream:
        lines += ['Its model card at the time:', '', stream.read()]
    else:
      lines += [f'`{model_dir}` had no model card; its own logs (runs.jsonl) tell how it was trained.']
    utils.write_text('\n'.join(lines), os.path.join(self.checkpoint_dir, STARTING_POINT))

  def save(self, step):
    self.graph.train_seconds.load(self.seconds_before + time.time() - self.segment_started, self.session)
    self.saver.save(self.session, os.path.join(self.checkpoint_dir, CHECKPOINT_PREFIX), global_step=step)

  def validate_and_schedule(self, step, val_pairs):
    """Scores the weights, keeps the best ones in best/, and decays the learning rate on a plateau.

    Any gain makes new best weights; only a gain of --min_improvement restarts the patience, so that a
    plateau's noise cannot postpone the decay for ever.
    Returns False when training should stop: the learning rate would fall below --min_learning_rate.
    """
    graph, session, options = self.graph, self.session, self.options
    val_psnr = validate(self.upscaler, val_pairs)
    best_psnr, improved_step, decay_step, rate = (value.item() for value in session.run(
        [graph.best_val_psnr, graph.improved_step, graph.decay_step, graph.learning_rate]))
    first = improved_step == 0  # the first score always counts
    if first or val_psnr > best_psnr + options.min_improvement:
      graph.improved_step.load(step, session)
    elif step - max(improved_step, decay_step) >= options.decay_patience * options.val_every:
      rate *= options.decay_factor
      graph.learning_rate.load(rate, session)
      graph.decay_step.load(step, session)
    if first or val_psnr > best_psnr:
      best_psnr = val_psnr
      graph.best_val_psnr.load(val_psnr, session)
      self.save_best(step)
    record = {'step': int(step), 'val_psnr': round(val_psnr, 4), 'best_val_psnr': round(best_psnr, 4),
              'learning_rate': float(f'{rate:.6g}'),
              'train_seconds': round(self.seconds_before + time.time() - self.segment_started)}
    utils.append_json_line(record, os.path.join(self.checkpoint_dir, VALIDATION_LOG))
    tqdm.write(f'step {step}: validation PSNR {val_psnr:.3f} dB (best {best_psnr:.3f}), '
               f'learning rate {rate:.2g}')
    return not below_minimum(rate, options.min_learning_rate)

  def save_best(self, step):
    best_dir = os.path.join(self.checkpoint_dir, BEST_DIR)
    os.makedirs(best_dir, exist_ok=True)
    self.best_saver.save(self.session, os.path.join(best_dir, CHECKPOINT_PREFIX), global_step=step)
    for log in (utils.MODEL_CONFIG_FILE, RUN_LOG):
      shutil.copy(os.path.join(self.checkpoint_dir, log), best_dir)


def below_minimum(rate, min_rate):
  """Whether `rate` is below --min_learning_rate, up to float32 rounding.

  The rate lives in a float32 variable, where 1e-4 decayed by 0.1 is 9.9999997e-06: that must count as 1e-5.
  """
  return rate < min_rate * (1 - 1e-5)


class Stopwatch:
  """Adds up the wall time of each activity of a run, to show where it goes (the rest is feeding)."""

  def __init__(self):
    self.started = time.perf_counter()
    self.seconds = collections.defaultdict(float)

  @contextlib.contextmanager
  def measure(self, activity):
    start = time.perf_counter()
    yield
    self.seconds[activity] += time.perf_counter() - start

  def report(self):
    total = time.perf_counter() - self.started
    shares = dict(self.seconds, **{'feeding and bookkeeping': total - sum(self.seconds.values())})
    return f'{total:.0f} s: ' + ', '.join(f'{name} {100 * seconds / total:.1f}%'
                                          for name, seconds in shares.items())


def train(patches, checkpoint_dir, config, options, val_pairs=()):
  """Trains until --steps/--epochs are done or the learning rate has decayed below its minimum.

  `options` carries the training flags (absl FlagValues); `val_pairs` are (LR, HR) validation images
  (none: no validation, no learning-rate decay, and the last checkpoint is the result).
  """
  steps_per_epoch = math.ceil(len(patches) / options.batch_size)
  total_steps = options.steps or options.epochs * steps_per_epoch
  tf.set_random_seed(options.seed)
  graph = build_training_graph(config['scale'], utils.CHANNEL_MODES[config['channels']],
                               config['output_activation'], options.learning_rate,
                               options.last_layer_lr_scale, options.loss_border)
  with tf.Session(config=espcn.session_config(options.threads)) as session:
    trainer = Trainer(graph, session, checkpoint_dir, config, options)
    latest = trainer.restore_or_initialize()
    step = session.run(graph.global_step)
    log_run_segment(checkpoint_dir, step, total_steps, options)
    print(f'{len(patches)} patches ({type(patches).__name__}), {steps_per_epoch} steps per epoch; '
          f'{"resuming " + latest if latest else "starting"} at step {step} of {total_steps}')
    progress = tqdm(total=total_steps, initial=step, unit='step', dynamic_ncols=True)
    stopped_early = below_minimum(session.run(graph.learning_rate).item(), options.min_learning_rate)
    smoothed_loss, keep_going = None, step < total_steps and not stopped_early
    first_step, stopwatch = step, Stopwatch()
    training_batches = batches(patches, options.batch_size, options.seed, step, options.augment)
    while keep_going:
      lr_batch, hr_batch = next(training_batches)
      with stopwatch.measure('training steps'):
        _, batch_loss = session.run([graph.train_op, graph.loss],
                                    {graph.lr_patches: lr_batch, graph.hr_patches: hr_batch})
      step += 1  # train_op increments global_step by one; fetching it in the same run may read either value
      smoothed_loss = batch_loss if smoothed_loss is None else 0.98 * smoothed_loss + 0.02 * batch_loss
      progress.update(1)
      seconds = time.perf_counter() - stopwatch.started
      patches_per_second = (step - first_step) * options.batch_size / seconds
      progress.set_postfix(loss=f'{smoothed_loss:.5f}', epoch=step // steps_per_epoch,
                           patches_per_s=f'{patches_per_second:.0f}', refresh=False)
      keep_going = step < total_steps
      if val_pairs and step % options.val_every == 0:
        with stopwatch.measure('validation'):
          keep_going = trainer.validate_and_schedule(step, val_pairs) and keep_going
      if step % options.save_every == 0 or not keep_going:
        with stopwatch.measure('saving'):
          trainer.save(step)
    progress.close()
  print(f'time {stopwatch.report()}')
  print(f'step {step}: loss {smoothed_loss if smoothed_loss is not None else float("nan"):.6f}, '
        f'checkpoint in {checkpoint_dir}')


@utils.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  data_path = FLAGS.data or prepare_data.default_data_path(FLAGS.channels, FLAGS.scale)
  checkpoint_dir = FLAGS.checkpoint_dir or default_checkpoint_dir(FLAGS.channels, FLAGS.scale)
  settings = (FLAGS.scale, FLAGS.channels, FLAGS.patch_size, FLAGS.stride,
              prepare_data.parse_downscales(FLAGS.downscales))
  config = {'scale': FLAGS.scale, 'channels': FLAGS.channels,
            'output_activation': FLAGS.output_activation}
  val_pairs = load_validation_pairs(FLAGS.val_dir, FLAGS.scale) if FLAGS.val_dir else ()
  check_checkpoint_dir(checkpoint_dir, config)  # the quick checks first, before minutes of preparation
  if not os.path.exists(data_path):
    print(f'{data_path} does not exist yet: preparing it from {FLAGS.images_dir}')
    print(prepare_data.prepare(FLAGS.images_dir, data_path, *settings))
  expected = prepare_data.data_attributes(*settings)
  patches = prepare_data.open_patches(data_path, expected, int(FLAGS.max_memory * 2**20))
  create_checkpoint_dir(checkpoint_dir, config)
  train(patches, checkpoint_dir, config, FLAGS, val_pairs)


if __name__ == '__main__':
  define_flags()
  app.run(main)
