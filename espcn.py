"""ESPCN, the Efficient Sub-Pixel Convolutional Network (Shi et al., CVPR 2016, arXiv 1609.05158), in TF1.

The whole idea: do all the work at LOW resolution, and make the high-resolution image only at the very end,
by rearranging feature maps. Three convolutions turn the LR image into r*r*C maps of the LR size; the
periodic shuffle (PS) puts the r*r values of each LR pixel into the r x r cell of HR pixels it covers:

  lr_images   [N, H, W, C]
  layer1      5x5 conv, C -> 64, tanh          [N, H, W, 64]
  layer2      3x3 conv, 64 -> 32, tanh         [N, H, W, 32]
  layer3      3x3 conv, 32 -> r*r*C            [N, H, W, r*r*C]
  PS          periodic shuffle                 [N, r*H, r*W, C]
  output      tanh (the blog) or none (the paper)

N, H and W are known only when the graph runs, so one graph serves training batches of small patches and
whole images of any size. Pixel values are in [0, 1]; C is 3 for RGB (the blog) or 1 for luminance Y (the
paper). Because every convolution runs on the LR grid, ESPCN costs r*r times less than a network that
upscales first and convolves at high resolution (SRCNN).

This file is the network, PS and the training loss, nothing else: train.py trains it, inference.py runs it
on images, tests/test_phase_shift.py checks PS against a plain NumPy loop.
"""
import numpy as np
import tensorflow.compat.v1 as tf

OUTPUT_ACTIVATIONS = ('tanh', 'none')  # train.py --output_activation: what follows PS
PS_ORDER = 'c*r*r + p*r + q'  # the channel that phase_shift puts at (p, q) of colour c's cell; in config.json


def conv_layer(inputs, scope, kernel_size, in_channels, out_channels):
  """A 'SAME' convolution (output as large as the input) with a bias: [N, H, W, in] -> [N, H, W, out].

  Weights start from a truncated normal with stddev sqrt(2 / (k*k*in)), He et al.'s initialisation, which
  keeps the scale of the activations from layer to layer; biases start at zero.
  """
  with tf.variable_scope(scope):
    stddev = np.sqrt(2.0 / (kernel_size * kernel_size * in_channels))
    weights = tf.get_variable('weights', [kernel_size, kernel_size, in_channels, out_channels],
                              initializer=tf.truncated_normal_initializer(stddev=stddev))
    bias = tf.get_variable('bias', [out_channels], initializer=tf.zeros_initializer())
    return tf.nn.conv2d(inputs, weights, strides=[1, 1, 1, 1], padding='SAME') + bias


def phase_shift(features, scale, channels):
  """The periodic shuffle PS: [N, H, W, r*r*C] -> [N, r*H, r*W, C].

  The channels come in C blocks of r*r, one block per colour, as in the blog's `_phase_shift`. Within the
  block of colour c, channel p*r + q becomes the HR pixel at row offset p and column offset q of its r x r
  cell, filling the cell row by row, as the blog's code does:

    output[n, r*h + p, r*w + q, c] = features[n, h, w, c*r*r + p*r + q]

  For one channel (C = 1) this is tf.nn.depth_to_space itself; for C > 1, depth_to_space puts the colour
  last instead (the paper's order, docs/PS.md). Written as reshape + transpose with the sizes read at run
  time, it needs no batch size and works for every shape.
  """
  shape = tf.shape(features)
  batch, height, width = shape[0], shape[1], shape[2]
  cells = tf.reshape(features, [batch, height, width, channels, scale, scale])  # [N, H, W, C, p, q]
  cells = tf.transpose(cells, [0, 1, 4, 2, 5, 3])  # [N, H, p, W, q, C]
  return tf.reshape(cells, [batch, height * scale, width * scale, channels])  # [N, rH, rW, C]


def espcn(lr_images, scale, channels, output_activation='tanh'):
  """The network on `lr_images` [N, H, W, C] in [0, 1]: returns the super-resolved images [N, rH, rW, C].

  The variable scopes name the layers as the blog's checkpoints do (layer1-conv1/weights, ...).
  """
  hidden = tf.tanh(conv_layer(lr_images, 'layer1-conv1', 5, channels, 64))  # [N, H, W, 64]
  hidden = tf.tanh(conv_layer(hidden, 'layer2-conv2', 3, 64, 32))  # [N, H, W, 32]
  subpixels = conv_layer(hidden, 'layer3-conv3', 3, 32, scale * scale * channels)  # [N, H, W, r*r*C]
  sr_images = phase_shift(subpixels, scale, channels)  # [N, rH, rW, C]
  return tf.tanh(sr_images) if output_activation == 'tanh' else sr_images


def mse_loss(sr_patches, hr_patches, scale, border=0):
  """The training loss: mean squared error between output and HR patches [N, rp, rp, C], in [0, 1] units.

  With `border` > 0 (train.py --loss_border) the loss leaves out that many LR pixels, r*border HR pixels,
  on every side of the patch: the outputs there see the zero padding of the 'SAME' convolutions, which a
  whole image has only at its own edges.
  """
  crop = border * scale
  inside = (slice(None), slice(crop, -crop or None), slice(crop, -crop or None))  # [N, rp-2crop, ..., C]
  return tf.reduce_mean(tf.square(sr_patches[inside] - hr_patches[inside]))
