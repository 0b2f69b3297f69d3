"""Trains ESPCN on the patch pairs that prepare_data.py writes: MSE loss, Adam, tf.train.Saver checkpoints.

Every epoch visits every patch once, in a fresh random order (seeded by --seed and the epoch, so a resumed
run sees the same order as an uninterrupted one). If --data does not exist yet it is prepared first from
--images_dir, as the blog's train.py does. A run resumes from the latest checkpoint in --checkpoint_dir and
continues its step count; --epochs/--steps give the total to reach, not the number to add.

  python train.py --images_dir=../shared/data/T91 --scale=3 --channels=rgb --epochs=100
"""
import json
import math
import os

import h5py
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
  flags.DEFINE_string('images_dir', 'images', 'Images to prepare --data from when it does not exist yet.')
  flags.DEFINE_string('checkpoint_dir', '', 'Where checkpoints go. Default: checkpoint/train_<channels>_x<scale>')
  utils.define_model_flags()
  flags.adopt_module_key_flags(utils)
  flags.DEFINE_integer('patch_size', 17, 'LR patch side, when preparing --data.', lower_bound=1)
  flags.DEFINE_integer('stride', 8, 'LR patch stride, when preparing --data.', lower_bound=1)
  flags.DEFINE_enum('output_activation', 'tanh', espcn.OUTPUT_ACTIVATIONS,
                    "Activation after PS: 'tanh' as the blog, 'none' as the paper.")
  flags.DEFINE_integer('batch_size', 16, 'Patches per training step.', lower_bound=1)
  flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate.')
  flags.DEFINE_integer('epochs', 100, 'Train until this many epochs (passes over all patches) are done.',
                       lower_bound=1)
  flags.DEFINE_integer('steps', 0, 'If > 0: train until this many steps are done, instead of --epochs.',
                       lower_bound=0)
  flags.DEFINE_integer('save_every', 1000, 'Save a checkpoint every this many steps (and at the end).',
                       lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Seed of the weight initialisation and of the patch order.')


CHECKPOINT_PREFIX = 'espcn.ckpt'


def default_checkpoint_dir(channels, scale):
  return os.path.join('checkpoint', f'train_{channels}_x{scale}')


def load_patches(path, expected_attributes):
  """Reads the LR and HR patches into memory as uint8, after checking what the file was made for."""
  try:
    with h5py.File(path, 'r') as data_file:
      attributes = {key: data_file.attrs[key] for key in expected_attributes if key in data_file.attrs}
      attributes = {key: value.item() if hasattr(value, 'item') else value
                    for key, value in attributes.items()}
      if attributes != expected_attributes:
        found = ' '.join(f'--{key}={value}' for key, value in sorted(attributes.items()))
        wanted = ' '.join(f'--{key}={value}' for key, value in sorted(expected_attributes.items()))
        raise utils.InputError(f'{path}: data was prepared with {found or "unknown settings"}, '
                               f'not {wanted}; prepare it again or pass another --data')
      return data_file['input'][:], data_file['label'][:]
  except (OSError, KeyError) as error:
    raise utils.InputError(f'{path}: not a patch file from prepare_data.py ({error})') from None


def build_training_graph(scale, num_channels, output_activation, learning_rate):
  """Placeholders for patch batches, the network, its MSE loss and one Adam step."""
  lr_patches = tf.placeholder(tf.float32, [None, None, None, num_channels], name='lr_patches')  # [N, p, p, C]
  hr_patches = tf.placeholder(tf.float32, [None, None, None, num_channels], name='hr_patches')  # [N, rp, rp, C]
  sr_patches = espcn.espcn(lr_patches, scale, num_channels, output_activation)  # [N, rp, rp, C]
  loss = tf.reduce_mean(tf.square(sr_patches - hr_patches))
  global_step = tf.train.get_or_create_global_step()
  train_op = tf.train.AdamOptimizer(learning_rate).minimize(loss, global_step=global_step)
  return lr_patches, hr_patches, loss, train_op, global_step


def prepare_checkpoint_dir(checkpoint_dir, config):
  """Creates the folder and its config, or checks that an existing run was made with the same settings."""
  if os.path.exists(os.path.join(checkpoint_dir, utils.MODEL_CARD_FILE)):
    raise utils.InputError(f'{checkpoint_dir}: holds a shipped model, which training never overwrites; '
                           f'pass another --checkpoint_dir')
  utils.ensure_writable_dir(checkpoint_dir)
  existing = utils.read_model_config(checkpoint_dir)
  if existing is None:
    utils.write_json(config, os.path.join(checkpoint_dir, utils.MODEL_CONFIG_FILE))
  elif existing != config:
    raise utils.InputError(f'{checkpoint_dir}: holds a run with settings {json.dumps(existing)}, '
                           f'not {json.dumps(config)}; pass another --checkpoint_dir')


def epoch_order(seed, epoch, num_patches):
  """The patch order of one epoch: a permutation that depends only on the seed and the epoch number."""
  return np.random.default_rng([seed, epoch]).permutation(num_patches)


def batches(lr_data, hr_data, batch_size, seed, first_step):
  """Yields (lr_batch, hr_batch) as float32 in [0, 1], from step `first_step` on, epoch after epoch."""
  steps_per_epoch = math.ceil(len(lr_data) / batch_size)
  epoch, offset = divmod(first_step, steps_per_epoch)
  while True:
    order = epoch_order(seed, epoch, len(lr_data))
    for start in range(offset * batch_size, len(order), batch_size):
      indices = np.sort(order[start:start + batch_size])
      yield lr_data[indices].astype(np.float32) / 255.0, hr_data[indices].astype(np.float32) / 255.0
    epoch, offset = epoch + 1, 0


def train(lr_data, hr_data, checkpoint_dir, config, options):
  """The training loop: resume, step with a progress bar, save every --save_every steps and at the end.

  `options` carries the training flags (batch_size, learning_rate, epochs, steps, save_every, seed).
  """
  steps_per_epoch = math.ceil(len(lr_data) / options.batch_size)
  total_steps = options.steps or options.epochs * steps_per_epoch
  tf.set_random_seed(options.seed)
  lr_patches, hr_patches, loss, train_op, global_step = build_training_graph(
      config['scale'], lr_data.shape[-1], config['output_activation'], options.learning_rate)
  saver = tf.train.Saver(max_to_keep=2, save_relative_paths=True)
  save_path = os.path.join(checkpoint_dir, CHECKPOINT_PREFIX)
  with tf.Session() as session:
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
      saver.restore(session, latest)
    else:
      session.run(tf.global_variables_initializer())
    step = session.run(global_step)
    print(f'{len(lr_data)} patches, {steps_per_epoch} steps per epoch; '
          f'{"resuming " + latest if latest else "starting"} at step {step} of {total_steps}')
    progress = tqdm(total=total_steps, initial=step, unit='step', dynamic_ncols=True)
    smoothed_loss = None
    for lr_batch, hr_batch in batches(lr_data, hr_data, options.batch_size, options.seed, step):
      if step >= total_steps:
        break
      _, batch_loss, step = session.run([train_op, loss, global_step],
                                        {lr_patches: lr_batch, hr_patches: hr_batch})
      smoothed_loss = batch_loss if smoothed_loss is None else 0.98 * smoothed_loss + 0.02 * batch_loss
      progress.update(1)
      steps_per_second = progress.format_dict['rate'] or 0.0
      progress.set_postfix(loss=f'{smoothed_loss:.5f}', epoch=step // steps_per_epoch,
                           patches_per_s=f'{steps_per_second * options.batch_size:.0f}')
      if step % options.save_every == 0 or step == total_steps:
        saver.save(session, save_path, global_step=step)
    progress.close()
  print(f'step {step}: loss {smoothed_loss if smoothed_loss is not None else float("nan"):.6f}, '
        f'checkpoint in {checkpoint_dir}')


@utils.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  data_path = FLAGS.data or prepare_data.default_data_path(FLAGS.channels, FLAGS.scale)
  checkpoint_dir = FLAGS.checkpoint_dir or default_checkpoint_dir(FLAGS.channels, FLAGS.scale)
  expected = prepare_data.data_attributes(FLAGS.scale, FLAGS.channels, FLAGS.patch_size, FLAGS.stride)
  if not os.path.exists(data_path):
    print(f'{data_path} does not exist yet: preparing it from {FLAGS.images_dir}')
    print(prepare_data.prepare(FLAGS.images_dir, data_path, **expected))
  lr_data, hr_data = load_patches(data_path, expected)
  config = {'scale': FLAGS.scale, 'channels': FLAGS.channels,
            'output_activation': FLAGS.output_activation}
  prepare_checkpoint_dir(checkpoint_dir, config)
  train(lr_data, hr_data, checkpoint_dir, config, FLAGS)


if __name__ == '__main__':
  define_flags()
  app.run(main)
