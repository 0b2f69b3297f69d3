"""What a training step is made of: the training graph (network, loss, Adam) and the batches fed to it.

train.py runs the loop; `python -m tools.benchmark_streaming` times the same steps on two patch readers.
"""
import math
from typing import NamedTuple

import numpy as np

from superres.runtime import tf  # first: TensorFlow's start-up settings (runtime.py), before espcn imports it
import espcn


class TrainingGraph(NamedTuple):
  """The tensors and ops that the training loop feeds, runs and updates."""
  lr_patches: tf.Tensor  # placeholder [N, p, p, C]
  hr_patches: tf.Tensor  # placeholder [N, rp, rp, C]
  sr_patches: tf.Tensor  # [N, rp, rp, C]
  loss: tf.Tensor
  train_op: tf.Operation
  reset_optimizer: tf.Operation  # Adam's moments back to zero: a warm restart's fresh start
  global_step: tf.Variable
  rate: tf.Tensor  # the learning rate of this step: learning_rate, or the warm restarts' cosine
  learning_rate: tf.Variable  # decayed by the loop when the validation PSNR stops improving (--schedule=plateau)
  best_val_psnr: tf.Variable  # the rest of the loop's state, saved with every checkpoint: the best score
  improved_step: tf.Variable  # the last validation that beat the best by --min_improvement
  decay_step: tf.Variable  # when the learning rate was last decayed: each rate gets its own patience
  train_seconds: tf.Variable
  all_finite: tf.Tensor  # whether every float variable (weights, Adam's moments, state) is finite


def build_training_graph(scale, num_channels, output_activation, learning_rate, last_layer_lr_scale,
                         loss_border=0, restarts=None):
  """Placeholders for patch batches, the network, its MSE loss (espcn.mse_loss) and one Adam step.

  The paper trains the last layer (layer3, just before PS) with a smaller learning rate; the hidden layers
  and the last layer therefore get Adam optimizers of their own (identical to one Adam when the scale is 1).
  `restarts` (a Restarts) makes the rate a function of the step (warm_restart_rate); without it the rate
  is the variable learning_rate, which the loop decays on a validation plateau.
  """
  lr_patches = tf.placeholder(tf.float32, [None, None, None, num_channels], name='lr_patches')  # [N, p, p, C]
  hr_patches = tf.placeholder(tf.float32, [None, None, None, num_channels],
                              name='hr_patches')  # [N, rp, rp, C]
  sr_patches = espcn.espcn(lr_patches, scale, num_channels, output_activation)  # [N, rp, rp, C]
  loss = espcn.mse_loss(sr_patches, hr_patches, scale, loss_border)
  global_step = tf.train.get_or_create_global_step()
  rate_variable = tf.Variable(learning_rate, trainable=False, name='learning_rate', dtype=tf.float32)
  rate = rate_variable if restarts is None else warm_restart_rate(global_step, learning_rate, restarts)
  last_layer = tf.trainable_variables('layer3-conv3')
  hidden_layers = [variable for variable in tf.trainable_variables() if variable not in last_layer]
  optimizers = [tf.train.AdamOptimizer(rate), tf.train.AdamOptimizer(rate * last_layer_lr_scale,
                                                                     name='AdamLastLayer')]
  train_op = tf.group(optimizers[0].minimize(loss, var_list=hidden_layers, global_step=global_step),
                      optimizers[1].minimize(loss, var_list=last_layer))
  reset_optimizer = tf.variables_initializer([variable for optimizer in optimizers
                                              for variable in optimizer.variables()])
  state = [tf.Variable(value, trainable=False, name=name, dtype=dtype) for name, value, dtype in
           (('best_val_psnr', 0.0, tf.float32),
            ('best_step', 0, tf.int64),  # improved_step; the name stays so that older checkpoints restore
            ('decay_step', 0, tf.int64),
            ('train_seconds', 0.0, tf.float64))]
  all_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(variable)) for variable in tf.global_variables()
                              if variable.dtype.base_dtype in (tf.float32, tf.float64)])
  return TrainingGraph(lr_patches, hr_patches, sr_patches, loss, train_op, reset_optimizer, global_step, rate,
                       rate_variable, *state, all_finite)


class Restarts(NamedTuple):
  """--schedule=restarts: cosine cycles of the learning rate, each a warm restart (SGDR, Loshchilov and
  Hutter 2017), Adam's moments reset at each cycle's start (what a restarted train.py run also did)."""
  first_cycle_steps: int
  cycle_mult: float  # each cycle is this many times as long as the one before
  min_rate: float  # where each cycle's cosine ends


def warm_restart_rate(global_step, learning_rate, restarts):
  """The learning rate at `global_step`: from learning_rate down to min_rate along a cosine, per cycle."""
  return tf.train.cosine_decay_restarts(learning_rate, global_step, restarts.first_cycle_steps,
                                        t_mul=restarts.cycle_mult, m_mul=1.0,
                                        alpha=restarts.min_rate / learning_rate)


def cycle_starts(restarts, total_steps):
  """The steps at which the cycles after the first begin, up to total_steps."""
  starts, length, start = [], float(restarts.first_cycle_steps), 0.0
  while True:
    start += length
    length *= restarts.cycle_mult
    if round(start) >= total_steps:
      return starts
    starts.append(round(start))


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
