"""The periodic shuffle PS, checked against an independent NumPy version of its channel order.

Contract (espcn.phase_shift): output[n, r*h + p, r*w + q, c] = features[n, h, w, c*r*r + p*r + q], i.e. the
channels form C colour blocks of r*r maps and, inside a block, map p*r + q fills row offset p and column
offset q of every r x r cell (row by row inside the cell, as the blog's _phase_shift).
"""
import numpy as np
import pytest

from espcn import phase_shift
from superres.runtime import tf

# (batch, height, width): one image and several, H != W, and a 1-pixel-high strip.
SHAPES = [(1, 5, 7), (3, 4, 6), (2, 1, 9)]


def periodic_shuffle_reference(features, scale, channels):
  """PS written out with loops over colour blocks and cell offsets, in plain NumPy."""
  batch, height, width, depth = features.shape
  assert depth == scale * scale * channels
  output = np.zeros((batch, height * scale, width * scale, channels), features.dtype)
  for colour in range(channels):
    block = features[..., colour * scale * scale:(colour + 1) * scale * scale]  # the r*r maps of one colour
    for row_offset in range(scale):
      for col_offset in range(scale):
        output[:, row_offset::scale, col_offset::scale, colour] = block[..., row_offset * scale + col_offset]
  return output


def depth_to_space_permutation(scale, channels):
  """perm such that tf.nn.depth_to_space(features[..., perm], r) == phase_shift(features, r, C).

  depth_to_space (NHWC) reads output[n, r*h + p, r*w + q, c] from input channel (p*r + q)*C + c: offsets
  outermost and row-major, colours innermost. PS reads channel c*r*r + p*r + q. So the permuted tensor's
  channel (p*r + q)*C + c must hold the original channel c*r*r + p*r + q; for C = 1 that is the identity.
  """
  perm = np.empty(scale * scale * channels, np.int64)
  for row_offset in range(scale):
    for col_offset in range(scale):
      for colour in range(channels):
        perm[(row_offset * scale + col_offset) * channels + colour] = (
            colour * scale * scale + row_offset * scale + col_offset)
  return perm


def test_reference_follows_the_contract_on_one_hand_checked_cell():
  """Guards the reference itself: with r=2, C=1 the 2x2 cell is filled row by row."""
  features = np.array([[[[10, 11, 12, 13]]]])  # one LR pixel, channels p*r + q = 0, 1, 2, 3
  np.testing.assert_array_equal(periodic_shuffle_reference(features, 2, 1)[0, :, :, 0],
                                [[10, 11],
                                 [12, 13]])


def test_phase_shift_prints_the_readme_toy():
  """README's toy, pasted: a 1x2x2x4 array of 0..15 becomes this 1x4x4x1 image."""
  features = np.arange(16, dtype=np.float32).reshape(1, 2, 2, 4)
  with tf.Session(graph=tf.Graph()) as session:
    result = session.run(phase_shift(tf.constant(features), 2, 1))
  np.testing.assert_array_equal(result[0, :, :, 0], [[0, 1, 4, 5],
                                                      [2, 3, 6, 7],
                                                      [8, 9, 12, 13],
                                                      [10, 11, 14, 15]])


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_phase_shift_matches_numpy_reference_for_shapes_fed_at_run_time(scale, channels):
  """One graph with an unknown batch, height and width must shuffle every shape fed to it correctly, as
  training batches of patches and whole test images share one graph."""
  rng = np.random.default_rng(100 * scale + channels)
  graph = tf.Graph()
  with graph.as_default():
    features = tf.placeholder(tf.float32, [None, None, None, scale * scale * channels])
    shuffled = phase_shift(features, scale, channels)
    with tf.Session(graph=graph) as session:
      for batch, height, width in SHAPES:
        values = rng.standard_normal((batch, height, width, scale * scale * channels)).astype(np.float32)
        result = session.run(shuffled, {features: values})
        assert result.shape == (batch, scale * height, scale * width, channels)
        np.testing.assert_array_equal(result, periodic_shuffle_reference(values, scale, channels))


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_phase_shift_is_depth_to_space_after_channel_permutation(scale, channels):
  """PS differs from tf.nn.depth_to_space only by the fixed channel permutation documented above."""
  rng = np.random.default_rng(7 * scale + channels)
  values = rng.standard_normal((2, 3, 5, scale * scale * channels)).astype(np.float32)
  graph = tf.Graph()
  with graph.as_default():
    features = tf.placeholder(tf.float32, [None, None, None, scale * scale * channels])
    shuffled = phase_shift(features, scale, channels)
    via_depth_to_space = tf.nn.depth_to_space(
        tf.gather(features, depth_to_space_permutation(scale, channels), axis=3), scale)
    with tf.Session(graph=graph) as session:
      ours, theirs = session.run([shuffled, via_depth_to_space], {features: values})
  np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_phase_shift_of_one_channel_is_depth_to_space(scale):
  """For one channel, the blog's order is tf.nn.depth_to_space's: no permutation at all."""
  values = np.random.default_rng(scale).standard_normal((2, 3, 5, scale * scale)).astype(np.float32)
  with tf.Session(graph=tf.Graph()) as session:
    ours, theirs = session.run([phase_shift(tf.constant(values), scale, 1), tf.nn.depth_to_space(values, scale)])
  np.testing.assert_array_equal(ours, theirs)
