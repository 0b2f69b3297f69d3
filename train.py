"""Trains ESPCN on the patch pairs that prepare_data.py writes: MSE loss, Adam, tf.train.Saver checkpoints.

Every epoch visits every patch once, in a fresh random order (seeded by --seed and the epoch, so a resumed
run sees the same order as an uninterrupted one). If --data does not exist yet it is prepared first from
--images_dir, as the blog's train.py does. A run resumes from the latest checkpoint in --checkpoint_dir and
continues its step count; --epochs/--steps give the total to reach, not the number to add.

  python train.py --images_dir=data/T91 --scale=3 --channels=rgb --epochs=100

Ctrl-C or SIGTERM saves the step being trained and prints the command that resumes exactly there; SIGKILL
(or the out-of-memory killer) loses the steps since the last save but leaves the folder restorable
(checkpoints.py). A loss or weights that stop being finite end the run without saving them, the last good
checkpoint kept.
The run folder also receives TensorBoard's events (`tensorboard --logdir=checkpoint`): events.py.

The loop in train() is TF1's own: next batch, session.run(train_op), log, validate, save. What guards it sits
in named helpers: Trainer (resume, the NaN guard, validation and schedule, checked saves), TrainingLog
(progress bar, TensorBoard, timing) and InterruptRequest (Ctrl-C, SIGTERM). tf.train.MonitoredTrainingSession
and its hooks are not used: none does what these do (a NaN hook that lets inf through, a saver hook that
saves step 0 and unchecked weights, summaries written before their checkpoint): docs/TRAINING.md, "The
training loop".
"""
import collections
import contextlib
import math
import os
import signal
import time

import numpy as np
from absl import app
from absl import flags
from tqdm import tqdm

from superres import choices
from superres import evaluation
from superres import files
from superres import model_flags
from superres import patches

# These load TensorFlow, seconds of start-up; loaded on first use, they load after absl has parsed the flags
# and main() has made its quick checks, so a mistyped flag or a missing input is reported at once. espcn
# imports TensorFlow itself: runtime loads first, to set up TensorFlow's quiet start-up (runtime.py).
runtime = files.import_on_first_use('superres.runtime')
checkpoints = files.import_on_first_use('superres.checkpoints')
espcn = files.import_on_first_use('espcn', after='superres.runtime')
events = files.import_on_first_use('superres.events')
inference = files.import_on_first_use('superres.inference')
training = files.import_on_first_use('superres.training')

FLAGS = flags.FLAGS


def define_flags():
  """The command line, defined only when run as a script so that tests can import this file."""
  flags.DEFINE_string('data', '', 'HDF5 patch file. Default: checkpoint/train_data_<channels>_x<scale>.h5')
  flags.DEFINE_string('checkpoint_dir', '',
                      'Where checkpoints go. Default: checkpoint/train_<channels>_x<scale>')
  model_flags.define_model_flags()
  patches.define_patch_flags()  # what --data is prepared from when it does not exist yet
  flags.adopt_module_key_flags(model_flags)
  flags.adopt_module_key_flags(patches)
  flags.DEFINE_enum('output_activation', 'tanh', choices.OUTPUT_ACTIVATIONS,
                    "Activation after PS: 'tanh' as the blog, 'none' as the paper.")
  flags.DEFINE_integer('batch_size', 16, 'Patches per training step.', lower_bound=1)
  flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate.', lower_bound=0)
  flags.DEFINE_integer('epochs', 100, 'Train until this many epochs (passes over all patches) are done.',
                       lower_bound=1)
  flags.DEFINE_integer('steps', 0, 'If > 0: train until this many steps are done, instead of --epochs.',
                       lower_bound=0)
  flags.DEFINE_integer('save_every', 1000, 'Save a checkpoint every this many steps (and at the end, and '
                       'on Ctrl-C or SIGTERM).', lower_bound=1)
  flags.DEFINE_integer('summary_every', 200, 'Steps between the training loss and learning-rate summaries '
                       'written for TensorBoard into --checkpoint_dir (validations write theirs at each '
                       '--val_every).', lower_bound=1)
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
  flags.DEFINE_list('val_jpeg_quality', [], 'JPEG qualities of the validation LR images (0: clean), e.g. 0,75 '
                    'to select a model for photos: the validation PSNR is the mean over them. Empty: clean.')
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
  """The state of a run around its loop: resume, guard, validate, decay the learning rate, save."""

  def __init__(self, graph, session, checkpoint_dir, config, options, restart_steps):
    self.graph, self.session, self.options = graph, session, options
    self.checkpoint_dir = checkpoint_dir
    self.restart_steps = restart_steps
    self.saver = runtime.tf.train.Saver(max_to_keep=2, save_relative_paths=True)
    self.best_saver = runtime.tf.train.Saver(max_to_keep=1, save_relative_paths=True)
    self.upscaler = inference.Upscaler(session, config['scale'], config['channels'],
                                       config['output_activation'])
    self.segment_started = time.time()
    self.seconds_before = 0.0
    self.checked_step = None  # the last step whose weights check_finite found finite

  def start(self, total_steps):
    """Restores the latest checkpoint (weights, Adam, step, learning rate, best score) or starts afresh,
    and logs the run. Returns (the checkpoint restored or None, the step)."""
    checkpoints.remove_partial_saves(self.checkpoint_dir)
    latest = runtime.tf.train.latest_checkpoint(self.checkpoint_dir)
    if latest:
      self.saver.restore(self.session, latest)
      for saver, folder in ((self.saver, self.checkpoint_dir),
                            (self.best_saver, checkpoints.best_dir(self.checkpoint_dir))):
        keep_counting(saver, folder)
    else:
      self.session.run(runtime.tf.global_variables_initializer())
      if self.options.init_from:
        self.copy_layers_from(self.options.init_from)
    self.seconds_before = self.session.run(self.graph.train_seconds)
    self.segment_started = time.time()
    step = self.session.run(self.graph.global_step)
    if latest:
      self.lower_learning_rate(step)
    checkpoints.log_run(self.checkpoint_dir, step, total_steps, self.options)
    return latest, step

  def copy_layers_from(self, model_dir):
    """Starts from another model's weights wherever the shapes agree (e.g. layers 1-2 of another scale).

    Only the network's weights are taken; Adam's moments, the step and the schedule start afresh.
    """
    checkpoint, names = layers_to_copy(model_dir, self.upscaler.scale, self.upscaler.channels)
    checkpoints.restore(self.session, checkpoint,
                        [variable for variable in runtime.tf.trainable_variables() if variable.op.name in names])
    tqdm.write(f'initialised {", ".join(names)} from {checkpoint}')
    checkpoints.write_starting_point(self.checkpoint_dir, model_dir, checkpoint, names)

  def lower_learning_rate(self, step):
    """On resuming (--schedule=plateau), a --learning_rate given lower than the restored rate replaces it,
    with a patience of its own: how a run stopped by a non-finite loss goes on. Rerunning the same command
    keeps the restored rate, which the plateaus may have decayed below --learning_rate. (With
    --schedule=restarts, --learning_rate sets the cycles' rate anyway.)"""
    options, graph, session = self.options, self.graph, self.session
    restored = session.run(graph.learning_rate).item()
    if (options.schedule == 'plateau' and options['learning_rate'].present
        and options.learning_rate < restored * (1 - 1e-6)):  # (float32 rounding of the same rate)
      graph.learning_rate.load(options.learning_rate, session)
      graph.decay_step.load(step, session)
      print(f'learning rate {restored:.3g} lowered to {options.learning_rate:.3g} (--learning_rate)')

  def is_complete(self, step, total_steps):
    """Whether the run has nothing left to train, said in a line: it is at --steps, or its learning rate
    decayed below --min_learning_rate."""
    stopped_early = below_minimum(self.session.run(self.graph.learning_rate).item(),
                                  self.options.min_learning_rate)
    if step >= total_steps or stopped_early:
      reason = 'its learning rate is below --min_learning_rate' if stopped_early else f'it is at step {step}'
      print(f'the run in {self.checkpoint_dir} is complete: {reason}; raise --steps (or --epochs) to train on')
    return step >= total_steps or stopped_early

  def start_cycle_if_due(self, step):
    """--schedule=restarts: at a cycle's first step, Adam's moments start afresh with the high rate."""
    if step in self.restart_steps:
      self.session.run(self.graph.reset_optimizer)

  def rate(self):
    """The learning rate of the next step."""
    return self.session.run(self.graph.rate).item()

  def check_loss(self, step, batch_loss):
    """A step's loss that is not finite ends the run before the step is logged, validated or saved."""
    if not np.isfinite(batch_loss):
      raise files.InputError(self.divergence(step, f'loss is {batch_loss}'))

  def check_finite(self, step, feed):
    """Stops the run before weights that are no longer finite are validated or saved.

    A step's fetched loss was computed before its update, so the updated weights are checked here: they,
    Adam's moments and the loss they give on the step's batch (`feed`) must be finite. Checked at most once
    a step.
    """
    if step == self.checked_step:
      return
    all_finite, loss = self.session.run([self.graph.all_finite, self.graph.loss], feed)
    if not all_finite:
      raise files.InputError(self.divergence(step, 'the weights are no longer finite'))
    if not np.isfinite(loss):
      raise files.InputError(self.divergence(step, f'the updated weights give a loss of {loss}'))
    self.checked_step = step

  def divergence(self, step, problem):
    """The line that ends a run whose loss or weights are no longer finite; nothing of them is saved."""
    options = self.options
    rate = (options.learning_rate if options.schedule == 'restarts'
            else self.session.run(self.graph.learning_rate).item())
    latest = runtime.tf.train.latest_checkpoint(self.checkpoint_dir)
    if latest is None:
      return f'step {step}: {problem}; no checkpoint was saved: start again with a --learning_rate below {rate:.3g}'
    return (f'step {step}: {problem}; the last good checkpoint is {latest}: resume from it with a '
            f'--learning_rate below {rate:.3g}')

  def validate(self, step, feed, val_pairs, log):
    """validate_and_schedule, of weights checked finite first; returns False when training should stop."""
    self.check_finite(step, feed)
    with log.stopwatch.measure('validation'):
      return self.validate_and_schedule(step, val_pairs, log.summaries)

  def validate_and_schedule(self, step, val_pairs, summaries):
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
    summaries.add_validation(step, val_psnr, self.upscaler.upscale(val_pairs[0][0]))
    tqdm.write(f'step {step}: validation PSNR {val_psnr:.3f} dB (best {best_psnr:.3f}), '
               f'learning rate {rate:.2g}')
    return not (plateau and below_minimum(rate, options.min_learning_rate))

  def save_checked(self, step, feed, log):
    """Saves the step's weights, checked finite first, and then the events waiting for them; returns the
    checkpoint's path."""
    self.check_finite(step, feed)
    with log.stopwatch.measure('saving'):
      saved = self.save(step)
      log.summaries.write_pending()
    return saved

  def save(self, step):
    """Saves the step's checkpoint; returns its path."""
    self.graph.train_seconds.load(self.seconds_before + time.time() - self.segment_started, self.session)
    return self.saver.save(self.session, os.path.join(self.checkpoint_dir, checkpoints.CHECKPOINT_PREFIX),
                           global_step=step)

  def save_best(self, step):
    best_dir = checkpoints.best_dir(self.checkpoint_dir)
    os.makedirs(best_dir, exist_ok=True)
    self.best_saver.save(self.session, os.path.join(best_dir, checkpoints.CHECKPOINT_PREFIX), global_step=step)
    checkpoints.copy_logs_to_best(self.checkpoint_dir)


def layers_to_copy(model_dir, scale, channels):
  """(checkpoint, names) of --init_from: its latest checkpoint and the weights in it that have this run's
  shapes. Checked before anything is prepared or written; an InputError says what does not fit."""
  checkpoint = checkpoints.latest_checkpoint(model_dir)
  if checkpoint is None:
    raise files.InputError(f'{model_dir}: no checkpoint to initialise from (--init_from)')
  try:
    stored = dict(runtime.tf.train.list_variables(checkpoint))
  except (runtime.tf.errors.OpError, ValueError) as error:
    raise files.InputError(f'{checkpoint}: cannot restore checkpoint ({error})') from None
  with runtime.tf.Graph().as_default():  # this run's network, only for its variables' names and shapes
    num_channels = model_flags.CHANNEL_MODES[channels]
    lr_images = runtime.tf.placeholder(runtime.tf.float32, [None, None, None, num_channels])  # [N, H, W, C]
    espcn.espcn(lr_images, scale, num_channels)
    names = [variable.op.name for variable in runtime.tf.trainable_variables()
             if stored.get(variable.op.name) == variable.shape.as_list()]
  if not names:
    raise files.InputError(f'{checkpoint}: no weights of this network\'s shapes to start from (--init_from)')
  return checkpoint, names


def keep_counting(saver, folder):
  """Hands a Saver the checkpoints that an earlier run saved in `folder`, so that its max_to_keep counts
  them too: otherwise every resume would leave the last checkpoints of the run before it behind for ever."""
  state = runtime.tf.train.get_checkpoint_state(folder)
  if state is not None:
    saver.recover_last_checkpoints(list(state.all_model_checkpoint_paths))


class InterruptRequest:
  """SIGINT (Ctrl-C) and SIGTERM during the training loop: noted here, acted on between steps.

  An exception raised wherever the signal lands could cut a save or a validation in half; instead the loop
  finishes the step (and its validation), saves it and stops. A second signal raises at once, as usual, for
  a loop that seems stuck (what was saved stays restorable). A signal ignored when the run started (a
  background job's SIGINT) stays ignored.
  """

  def __init__(self):
    self.signal_number = None
    self.previous_handlers = {}

  def __enter__(self):
    for number in (signal.SIGINT, signal.SIGTERM):
      if signal.getsignal(number) is not signal.SIG_IGN:
        self.previous_handlers[number] = signal.signal(number, self.note)
    return self

  def __exit__(self, *exception):
    for number, handler in self.previous_handlers.items():
      signal.signal(number, signal.SIG_DFL if handler is None else handler)

  @property
  def requested(self):
    """Whether a signal came since the `with` began: the loop then saves its step and stops."""
    return self.signal_number is not None

  def note(self, signal_number, frame):
    del frame  # Unused: a signal handler's signature.
    if self.signal_number is not None:
      raise self.exception('', signal_number)
    self.signal_number = signal_number

  def exception(self, message, signal_number=None):
    """What files.exit_on_input_error turns into `message` and exit code 130 (SIGINT) or 143 (SIGTERM)."""
    number = self.signal_number if signal_number is None else signal_number
    return files.Terminated(message) if number == signal.SIGTERM else KeyboardInterrupt(message)


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


class TrainingLog:
  """What a run shows of its steps: the progress bar (smoothed loss, epoch, patches/s), TensorBoard's loss
  and learning-rate events (events.Summaries, which also take the validations') and where the time goes
  (Stopwatch). The bar opens with its `with`; the bar and the event file close when it ends."""

  def __init__(self, checkpoint_dir, first_step, total_steps, steps_per_epoch, val_pairs, scale, options,
               read_rate):
    self.first_step, self.total_steps, self.steps_per_epoch = first_step, total_steps, steps_per_epoch
    self.batch_size, self.summary_every, self.read_rate = options.batch_size, options.summary_every, read_rate
    self.smoothed_loss = None
    self.stopwatch = Stopwatch()
    self.summaries = events.Summaries(checkpoint_dir, first_step, val_pairs, scale)
    self.progress = None

  def __enter__(self):
    self.progress = tqdm(total=self.total_steps, initial=self.first_step, unit='step', dynamic_ncols=True)
    return self

  def __exit__(self, *exception):
    self.progress.close()
    self.summaries.close()

  def add_step(self, step, batch_loss):
    """Shows the step and its loss on the bar; adds the loss to the next summary, due every --summary_every
    steps with the learning rate (read_rate())."""
    self.smoothed_loss = (batch_loss if self.smoothed_loss is None
                          else 0.98 * self.smoothed_loss + 0.02 * batch_loss)
    self.progress.update(1)
    seconds = time.perf_counter() - self.stopwatch.started
    patches_per_second = (step - self.first_step) * self.batch_size / seconds
    self.progress.set_postfix(loss=f'{self.smoothed_loss:.5f}', epoch=step // self.steps_per_epoch,
                              patches_per_s=f'{patches_per_second:.0f}', refresh=False)
    self.summaries.add_loss(batch_loss)
    if step % self.summary_every == 0:
      self.summaries.add_training(step, self.read_rate())


def start_line(training_patches, steps_per_epoch, latest, step, total_steps, restart_steps):
  """What a run prints as it starts: its data, where it starts and ends, and its warm restarts."""
  return (f'{len(training_patches)} patches ({type(training_patches).__name__}), '
          f'{steps_per_epoch} steps per epoch; '
          f'{"resuming " + latest if latest else "starting"} at step {step} of {total_steps}'
          + (f'; warm restarts at steps {", ".join(map(str, sorted(restart_steps)))}' if restart_steps else ''))


def train(training_patches, checkpoint_dir, config, options, val_pairs=()):
  """Trains until --steps/--epochs are done or the learning rate has decayed below its minimum.

  `options` carries the training flags (absl FlagValues); `val_pairs` are (LR, HR) validation images
  (none: no validation, no learning-rate decay, and the last checkpoint is the result).
  """
  steps_per_epoch = math.ceil(len(training_patches) / options.batch_size)
  total_steps = options.steps or options.epochs * steps_per_epoch
  runtime.tf.set_random_seed(options.seed)
  restarts = (training.Restarts(options.cycle_steps, options.cycle_mult, options.min_learning_rate)
              if options.schedule == 'restarts' else None)
  restart_steps = set(training.cycle_starts(restarts, total_steps)) if restarts else set()
  graph = training.build_training_graph(config['scale'], model_flags.CHANNEL_MODES[config['channels']],
                                        config['output_activation'], options.learning_rate,
                                        options.last_layer_lr_scale, options.loss_border, restarts)
  with runtime.tf.Session(config=runtime.session_config(options.threads)) as session:
    trainer = Trainer(graph, session, checkpoint_dir, config, options, restart_steps)
    latest, step = trainer.start(total_steps)
    print(start_line(training_patches, steps_per_epoch, latest, step, total_steps, restart_steps))
    if trainer.is_complete(step, total_steps):
      return
    log = TrainingLog(checkpoint_dir, step, total_steps, steps_per_epoch, val_pairs, config['scale'], options,
                      trainer.rate)
    training_batches = training.batches(training_patches, options.batch_size, options.seed, step,
                                        options.augment)
    with InterruptRequest() as interrupt, log:
      keep_going = True
      while keep_going:
        trainer.start_cycle_if_due(step)  # --schedule=restarts: Adam's moments reset at a cycle's start
        lr_batch, hr_batch = next(training_batches)
        feed = {graph.lr_patches: lr_batch, graph.hr_patches: hr_batch}
        with log.stopwatch.measure('training steps'):
          _, batch_loss = session.run([graph.train_op, graph.loss], feed)
        step += 1  # train_op increments global_step by one; fetching it in the same run may read either value
        trainer.check_loss(step, batch_loss)  # a NaN or infinite loss ends the run, its step unsaved
        log.add_step(step, batch_loss)  # the progress bar and TensorBoard's loss
        keep_going = step < total_steps
        if val_pairs and step % options.val_every == 0:
          keep_going = trainer.validate(step, feed, val_pairs, log) and keep_going  # False: a plateau ended it
        interrupted = interrupt.requested and keep_going  # Ctrl-C or SIGTERM during the step
        if step % options.save_every == 0 or not keep_going or interrupted:
          saved = trainer.save_checked(step, feed, log)
        if interrupted:
          raise interrupt.exception(f'interrupted at step {step}: saved {saved}; resume with: '
                                    f'{checkpoints.command_line(options)}')
  print(f'time {log.stopwatch.report()}')
  print(f'step {step}: loss {log.smoothed_loss:.6f}, checkpoint in {checkpoint_dir}')


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  data_path = FLAGS.data or patches.default_data_path(FLAGS.channels, FLAGS.scale)
  lr_jpeg = patches.parse_lr_jpeg(FLAGS.lr_jpeg_quality, FLAGS.lr_jpeg_fraction, FLAGS.lr_jpeg_seed)
  settings = (FLAGS.scale, FLAGS.channels, FLAGS.patch_size, FLAGS.stride,
              patches.parse_downscales(FLAGS.downscales), lr_jpeg)
  val_qualities = evaluation.validation_qualities(FLAGS.val_jpeg_quality)
  val_pairs = evaluation.validation_pairs(FLAGS.val_dir, FLAGS.scale, val_qualities) if FLAGS.val_dir else ()
  if not os.path.exists(data_path):
    files.list_images(FLAGS.images_dir)  # what --data will be prepared from: no images is said at once
  # TensorFlow loads from here on (checkpoints, espcn): the checks above are reported without its start-up
  checkpoint_dir = FLAGS.checkpoint_dir or checkpoints.default_run_dir(FLAGS.channels, FLAGS.scale)
  config = {'scale': FLAGS.scale, 'channels': FLAGS.channels,
            'output_activation': FLAGS.output_activation, 'ps_order': espcn.PS_ORDER}
  config.update(patches.lr_jpeg_attributes(lr_jpeg))  # compressed training LR: the inputs the weights are for
  checkpoints.check_run_dir(checkpoint_dir, config)  # the quick checks first, before minutes of preparation
  if FLAGS.init_from and checkpoints.latest_checkpoint(checkpoint_dir) is None:  # (a resumed run ignores it)
    layers_to_copy(FLAGS.init_from, FLAGS.scale, FLAGS.channels)
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
