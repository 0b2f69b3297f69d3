"""Properties over random shapes, channel counts and scales (hypothesis; issue 20, item 6): PS against its
NumPy reference, LR/HR patch alignment, tiles against one pass.

The other tests check these on a few hand-picked cases; here hypothesis draws the cases, including the
edges a hand picks last (a 1-pixel-high image, a tile smaller than its margin, a patch as large as the
image), and shrinks a failure to its smallest example. 25 examples each, a few seconds: small shapes.
The example database is off (database=None), so that no failing example is stored in the repository
(hypothesis keeps only a cache in .hypothesis/, which ignores itself in git); a failure prints the
@reproduce_failure line that replays it.
"""
import h5py
import numpy as np
import pytest
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from superres import pairs
from superres import patches
from conftest import expected_patch_count
from conftest import smooth_rgb
from espcn import phase_shift
from superres.runtime import tf
from test_phase_shift import periodic_shuffle_reference

FEW_FAST_EXAMPLES = settings(max_examples=25, deadline=None, database=None, print_blob=True)
BICUBIC_REACH = 2  # LR pixels on each side whose value Pillow's bicubic shrink takes from outside a patch


@pytest.fixture(scope='module')
def phase_shift_graph():
  """phase_shift_graph(scale, channels) -> (session, features placeholder, PS of it): one graph per setting,
  with the batch, height and width unknown until run time, as in training and inference."""
  graphs = {}

  def graph_for(scale, channels):
    if (scale, channels) not in graphs:
      graph = tf.Graph()
      with graph.as_default():
        features = tf.placeholder(tf.float32, [None, None, None, scale * scale * channels])
        graphs[scale, channels] = (tf.Session(graph=graph), features, phase_shift(features, scale, channels))
    return graphs[scale, channels]
  yield graph_for
  for session, _, _ in graphs.values():
    session.close()


@FEW_FAST_EXAMPLES
@given(scale=st.integers(2, 4), channels=st.integers(1, 4), batch=st.integers(1, 3), height=st.integers(1, 6),
       width=st.integers(1, 6), seed=st.integers(0, 2 ** 32 - 1))
def test_phase_shift_equals_the_numpy_reference(phase_shift_graph, scale, channels, batch, height, width, seed):
  """Every feature value distinct (a permutation of 0..n-1), so a value put in any wrong place shows."""
  session, features, shuffled = phase_shift_graph(scale, channels)
  shape = (batch, height, width, scale * scale * channels)
  values = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape).astype(np.float32)
  np.testing.assert_array_equal(session.run(shuffled, {features: values}),
                                periodic_shuffle_reference(values, scale, channels))


@FEW_FAST_EXAMPLES
@given(scale=st.integers(2, 4), channels=st.sampled_from([1, 3]), patch_size=st.integers(1, 6),
       stride=st.integers(1, 5), extra_height=st.integers(0, 7), extra_width=st.integers(0, 7),
       seed=st.integers(0, 2 ** 32 - 1))
def test_each_hr_patch_is_made_of_the_cells_of_its_lr_patchs_pixels(
    scale, channels, patch_size, stride, extra_height, extra_width, seed):
  """On an HR image that is constant in each r x r cell (LR pixel i, j is its cell's value), the HR patch
  paired with an LR patch must be exactly that patch's pixels, each repeated r x r: an HR patch shifted by
  any number of HR pixels, or cut at another stride, takes in part of a neighbouring cell."""
  lr = np.random.default_rng(seed).integers(0, 256, (patch_size + extra_height, patch_size + extra_width,
                                                     channels), dtype=np.uint8)
  hr = lr.repeat(scale, axis=0).repeat(scale, axis=1)
  lr_patches, hr_patches = pairs.extract_patch_pairs(lr, hr, patch_size, stride, scale)
  assert len(lr_patches) == expected_patch_count(*lr.shape[:2], patch_size, stride)
  assert hr_patches.shape[1:] == (patch_size * scale, patch_size * scale, channels)
  np.testing.assert_array_equal(hr_patches, lr_patches.repeat(scale, axis=1).repeat(scale, axis=2))


@pytest.fixture(scope='module')
def image_folder(tmp_path_factory):
  return tmp_path_factory.mktemp('property_images')


@FEW_FAST_EXAMPLES
@given(scale=st.integers(2, 4), patch_size=st.integers(2 * BICUBIC_REACH + 1, 8), stride=st.integers(1, 6),
       lr_height=st.integers(0, 8), lr_width=st.integers(0, 8), crop_height=st.integers(0, 3),
       crop_width=st.integers(0, 3), seed=st.integers(0, 1000))
def test_prepared_lr_patches_are_the_bicubic_shrink_of_their_hr_patches(
    image_folder, scale, patch_size, stride, lr_height, lr_width, crop_height, crop_width, seed):
  """prepare_data.py's pairs, rgb: an LR patch is its HR patch shrunk by r with the same bicubic filter, to
  the bit, but for BICUBIC_REACH pixels along its edges (there the shrink of the whole image also weighs HR
  pixels outside the patch). An HR patch off by one HR pixel gives other values. The image's width and
  height need not be multiples of r (crop_*: the pixels modcrop drops).

  At most twice as tall as wide: Pillow shrinks in two passes, each rounding to 8 bits, and runs the
  vertical one first on a taller image, but the horizontal one first on a square patch; the rounding then
  differs by a level here and there (Pillow 13; the pairs are still aligned).
  """
  height = (patch_size + lr_height) * scale + min(crop_height, scale - 1)
  width = (patch_size + lr_width) * scale + min(crop_width, scale - 1)
  assume(height <= 2 * width)
  folder = image_folder / f'{seed}_{height}x{width}_x{scale}'
  folder.mkdir(exist_ok=True)
  Image.fromarray(smooth_rgb(height, width, seed)).save(folder / 'image.png')
  data = folder / f'p{patch_size}_s{stride}.h5'
  patches.prepare(str(folder), str(data), scale, 'rgb', patch_size, stride)
  with h5py.File(data, 'r') as data_file:
    lr_patches, hr_patches = data_file['input'][:], data_file['label'][:]
  assert len(lr_patches) == expected_patch_count(height // scale, width // scale, patch_size, stride)
  inside = slice(BICUBIC_REACH, patch_size - BICUBIC_REACH)
  for lr_patch, hr_patch in zip(lr_patches, hr_patches):
    shrunk = np.asarray(pairs.bicubic_resize(Image.fromarray(hr_patch), (patch_size, patch_size)))
    np.testing.assert_array_equal(shrunk[inside, inside], lr_patch[inside, inside])


@FEW_FAST_EXAMPLES
@given(setting=st.sampled_from([(2, 'rgb'), (3, 'y')]), gray=st.booleans(), height=st.integers(1, 30),
       width=st.integers(1, 30), tile=st.integers(4, 16), seed=st.integers(0, 1000))
def test_tiles_equal_one_pass(upscaler, setting, gray, height, width, tile, seed):
  """Any image size and tile side, colour (the reconstruction graph, with the 'y' model's bicubic chroma)
  or gray (the network alone): tile by tile gives the bytes of one pass."""
  model = upscaler(*setting)
  image = smooth_rgb(height, width, seed)
  image = image[..., 1] if gray else image
  original_tile = model.tile
  try:
    model.tile = height * width  # one pass
    one_pass = model.upscale(image)
    model.tile = tile
    np.testing.assert_array_equal(model.upscale(image), one_pass)
  finally:
    model.tile = original_tile
