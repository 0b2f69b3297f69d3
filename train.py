"""Trains ESPCN on the patch pairs that prepare_data.py writes: MSE loss, Adam, tf.train.Saver checkpoints.

Every epoch visits every patch once, in a fresh random order (seeded by --seed and the epoch, so a resumed
run sees the same order as an uninterrupted one). If --data does not exist yet it is prepared first from
--images_dir, as the blog's train.py does. A run resumes from the latest checkpoint in --checkpoint_dir and
continues its step count; --epochs/--steps give the total to reach, not the number to add.

  python train.py --images_dir=../shared/data/T91 --scale=3 --channels=rgb --epochs=100
"""
import collections
import contextlib
import math
import os
import time

from absl import app
from absl import flags
from tqdm import tqdm

import checkpoints
import espcn
import evaluation
import inference
import patches
import training
import utils
from runtime import session_config
from runtime import tf

FLAGS = flags.FLAGS


def define_flags():
  """The command line, defined only when run as a script so that tests can import this file."""
  flags.DEFINE_string('data', '', 'HDF5 patch file. Default: checkpoint/train_data_<channels>_x<scale>.h5')
  flags.DEFINE_string('checkpoint_dir', '',
                      'Where checkpoints go. Default: checkpoint/train_<channels>_x<scale>')
  utils.define_model_flags()
  patches.define_patch_flags()  # what --data is prepared from when it does not exist yet
  flags.adopt_module_key_flags(utils)
  flags.adopt_module_key_flags(patches)
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
                     'The lowest learning rate. plateau: stop (early) when a decay would take the rate below '
                     'this; restarts: where each cycle\'s cosine ends.')
  flags.DEFINE_enum('schedule', 'plateau', ['plateau', 'restarts'],
                    "The learning rate. 'plateau': --learning_rate, multiplied by --decay_factor when the "
                    "validation PSNR stops improving, until --min_learning_rate (the paper). 'restarts': "
                    'cycles of --cycle_steps (each --cycle_mult times longer than the one before), in which '
                    'the rate falls from --learning_rate to --min_learning_rate along a cosine; each cycle '
                    "starts afresh, Adam's moments reset (warm restarts, SGDR). Train for the sum of whole "
                    'cycles (--steps), with --val_dir to keep the best weights.')
  flags.DEFINE_integer('cycle_steps', 10000, 'With --schedule=restarts: steps of the first cycle.',
                       lower_bound=1)
  flags.DEFINE_float('cycle_mult', 2.0, 'With --schedule=restarts: each cycle is this many times as long as '
                     'the one before.', lower_bound=1)


class Trainer:
  """The training loop and its state: resume, step, validate, decay the learning rate, save, stop."""

  def __init__(self, graph, session, checkpoint_dir, config, options):
    self.graph, self.session, self.options = graph, session, options
    self.checkpoint_dir = checkpoint_dir
    self.saver = tf.train.Saver(max_to_keep=2, save_relative_paths=True)
    self.best_saver = tf.train.Saver(max_to_keep=1, save_relative_paths=True)
    self.upscaler = inference.Upscaler(session, config['scale'], config['channels'],
                                       config['output_activation'])
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
    checkpoint = checkpoints.latest_checkpoint(model_dir)
    if checkpoint is None:
      raise utils.InputError(f'{model_dir}: no checkpoint to initialise from (--init_from)')
    try:
      shapes = dict(tf.train.list_variables(checkpoint))
    except (tf.errors.OpError, ValueError) as error:
      raise utils.InputError(f'{checkpoint}: cannot restore checkpoint ({error})') from None
    matching = [variable for variable in tf.trainable_variables()
                if shapes.get(variable.op.name) == variable.shape.as_list()]
    if not matching:
      raise utils.InputError(f'{checkpoint}: no weights of this network\'s shapes to start from (--init_from)')
    checkpoints.restore(self.session, checkpoint, matching)
    names = [variable.op.name for variable in matching]
    tqdm.write(f'initialised {", ".join(names)} from {checkpoint}')
    checkpoints.write_starting_point(self.checkpoint_dir, model_dir, checkpoint, names)

  def save(self, step):
    self.graph.train_seconds.load(self.seconds_before + time.time() - self.segment_started, self.session)
    self.saver.save(self.session, os.path.join(self.checkpoint_dir, checkpoints.CHECKPOINT_PREFIX),
                    global_step=step)

  def validate_and_schedule(self, step, val_pairs):
    """Scores the weights, keeps the best ones in best/, and decays the learning rate on a plateau.

    Any gain makes new best weights; only a gain of --min_improvement restarts the patience, so that a
    plateau's noise cannot postpone the decay for ever.
    Returns False when training should stop: the learning rate would fall below --min_learning_rate.
    """
    graph, session, options = self.graph, self.session, self.options
    val_psnr = evaluation.mean_psnr(self.upscaler, val_pairs)
    best_psnr, improved_step, decay_step, rate = (value.item() for value in session.run(
        [graph.best_val_psnr, graph.improved_step, graph.decay_step, graph.rate]))
    first = improved_step == 0  # the first score always counts
    plateau = options.schedule == 'plateau'
    if first or val_psnr > best_psnr + options.min_improvement:
      graph.improved_step.load(step, session)
    elif plateau and step - max(improved_step, decay_step) >= options.decay_patience * options.val_every:
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
    checkpoints.log_validation(self.checkpoint_dir, record)
    tqdm.write(f'step {step}: validation PSNR {val_psnr:.3f} dB (best {best_psnr:.3f}), '
               f'learning rate {rate:.2g}')
    return not (plateau and below_minimum(rate, options.min_learning_rate))

  def save_best(self, step):
    best_dir = checkpoints.best_dir(self.checkpoint_dir)
    os.makedirs(best_dir, exist_ok=True)
    self.best_saver.save(self.session, os.path.join(best_dir, checkpoints.CHECKPOINT_PREFIX), global_step=step)
    checkpoints.copy_logs_to_best(self.checkpoint_dir)


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


def train(training_patches, checkpoint_dir, config, options, val_pairs=()):
  """Trains until --steps/--epochs are done or the learning rate has decayed below its minimum.

  `options` carries the training flags (absl FlagValues); `val_pairs` are (LR, HR) validation images
  (none: no validation, no learning-rate decay, and the last checkpoint is the result).
  """
  steps_per_epoch = math.ceil(len(training_patches) / options.batch_size)
  total_steps = options.steps or options.epochs * steps_per_epoch
  tf.set_random_seed(options.seed)
  restarts = (training.Restarts(options.cycle_steps, options.cycle_mult, options.min_learning_rate)
              if options.schedule == 'restarts' else None)
  restart_steps = set(training.cycle_starts(restarts, total_steps)) if restarts else set()
  graph = training.build_training_graph(config['scale'], utils.CHANNEL_MODES[config['channels']],
                                        config['output_activation'], options.learning_rate,
                                        options.last_layer_lr_scale, options.loss_border, restarts)
  with tf.Session(config=session_config(options.threads)) as session:
    trainer = Trainer(graph, session, checkpoint_dir, config, options)
    latest = trainer.restore_or_initialize()
    step = session.run(graph.global_step)
    checkpoints.log_run(checkpoint_dir, step, total_steps, options)
    print(f'{len(training_patches)} patches ({type(training_patches).__name__}), '
          f'{steps_per_epoch} steps per epoch; '
          f'{"resuming " + latest if latest else "starting"} at step {step} of {total_steps}'
          + (f'; warm restarts at steps {", ".join(map(str, sorted(restart_steps)))}' if restart_steps else ''))
    progress = tqdm(total=total_steps, initial=step, unit='step', dynamic_ncols=True)
    stopped_early = below_minimum(session.run(graph.learning_rate).item(), options.min_learning_rate)
    smoothed_loss, keep_going = None, step < total_steps and not stopped_early
    first_step, stopwatch = step, Stopwatch()
    training_batches = training.batches(training_patches, options.batch_size, options.seed, step,
                                        options.augment)
    while keep_going:
      if step in restart_steps:  # a cycle starts: Adam's moments start afresh with the high rate
        session.run(graph.reset_optimizer)
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
  if smoothed_loss is None:  # nothing left to do
    reason = 'its learning rate is below --min_learning_rate' if stopped_early else f'it is at step {step}'
    print(f'the run in {checkpoint_dir} is complete: {reason}; raise --steps (or --epochs) to train on')
    return
  print(f'time {stopwatch.report()}')
  print(f'step {step}: loss {smoothed_loss:.6f}, checkpoint in {checkpoint_dir}')


@utils.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  data_path = FLAGS.data or patches.default_data_path(FLAGS.channels, FLAGS.scale)
  checkpoint_dir = FLAGS.checkpoint_dir or checkpoints.default_run_dir(FLAGS.channels, FLAGS.scale)
  settings = (FLAGS.scale, FLAGS.channels, FLAGS.patch_size, FLAGS.stride,
              patches.parse_downscales(FLAGS.downscales))
  config = {'scale': FLAGS.scale, 'channels': FLAGS.channels,
            'output_activation': FLAGS.output_activation}
  val_pairs = evaluation.validation_pairs(FLAGS.val_dir, FLAGS.scale) if FLAGS.val_dir else ()
  checkpoints.check_run_dir(checkpoint_dir, config)  # the quick checks first, before minutes of preparation
  if not os.path.exists(data_path):
    print(f'{data_path} does not exist yet: preparing it from {FLAGS.images_dir}')
    print(patches.prepare(FLAGS.images_dir, data_path, *settings))
  expected = patches.data_attributes(*settings)
  training_patches = patches.open_patches(data_path, expected, int(FLAGS.max_memory * 2**20))
  checkpoints.create_run_dir(checkpoint_dir, config)
  train(training_patches, checkpoint_dir, config, FLAGS, val_pairs)


if __name__ == '__main__':
  define_flags()
  app.run(main)
