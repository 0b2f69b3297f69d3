"""What a training step is made of: the training graph (network, loss, Adam) and the batches fed to it.

train.py runs the loop; tools/benchmark_streaming.py times the same steps on two patch readers.
"""
import math
from typing import NamedTuple

import numpy as np

from runtime import tf  # first: TensorFlow's start-up settings (runtime.py), before espcn imports it
import espcn


class TrainingGraph(NamedTuple):
  """The tensors and ops that the training loop feeds, runs and updates."""
  lr_patches: tf.Tensor  # placeholder [N, p, p, C]
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
  """Placeholders for patch batches, the network, its MSE loss (espcn.mse_loss) and one Adam step.

  The paper trains the last layer (layer3, just before PS) with a smaller learning rate; the hidden layers
  and the last layer therefore get Adam optimizers of their own (identical to one Adam when the scale is 1).
  """
  lr_patches = tf.placeholder(tf.float32, [None, None, None, num_channels], name='lr_patches')  # [N, p, p, C]
  hr_patches = tf.placeholder(tf.float32, [None, None, None, num_channels],
                              name='hr_patches')  # [N, rp, rp, C]
  sr_patches = espcn.espcn(lr_patches, scale, num_channels, output_activation)  # [N, rp, rp, C]
  loss = espcn.mse_loss(sr_patches, hr_patches, scale, loss_border)
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
