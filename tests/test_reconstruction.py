"""The reconstruction graph: bicubic as a fixed sub-pixel convolution, and the y-mode colour merge."""
import numpy as np
import pytest
from PIL import Image

from superres import checkpoints
import espcn
from superres import colour
from superres import inference
from conftest import smooth_rgb
from superres.runtime import tf


def run_bicubic_upscale(image, scale, mix=None):
  """Bicubic upscaling as the reconstruction graph does it (a fixed convolution, then PS), on one float32
  [H, W, C] image, with the colour matrix `mix` [D, C] if given."""
  channels = image.shape[-1]
  with tf.Graph().as_default(), tf.Session() as session:
    images = tf.placeholder(tf.float32, [None, None, None, channels])
    out_channels = channels if mix is None else len(mix)
    upscaled = espcn.phase_shift(inference.bicubic_subpixels(images, scale, mix), scale, out_channels)
    return session.run(upscaled, {images: image[None]})[0]


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_subpixels_and_ps_are_pillows_bicubic_away_from_the_border(scale):
  """Same kernel as Pillow's BICUBIC (Keys, a = -0.5); only the edges differ (mirrored here, as in MATLAB;
  Pillow renormalises the weights that fall inside). Pillow's 'F' mode keeps floats, no rounding."""
  lr_image = smooth_rgb(23, 17, seed=scale)[..., 0].astype(np.float32)
  ours = run_bicubic_upscale(lr_image[..., None], scale)[..., 0]
  pillow = np.asarray(Image.fromarray(lr_image, 'F').resize((17 * scale, 23 * scale), Image.BICUBIC))
  inside = slice(inference.BICUBIC_RADIUS * scale, -inference.BICUBIC_RADIUS * scale)
  np.testing.assert_allclose(ours[inside, inside], pillow[inside, inside], atol=1e-3)
  assert np.abs(ours - pillow).max() < 0.05 * np.ptp(lr_image)  # the border: close, not equal


@pytest.mark.parametrize('scale', [2, 3])
def test_bicubic_subpixels_and_ps_keep_constant_images_and_each_colour_apart(scale):
  image = np.stack([np.full((6, 5), 40.0), np.full((6, 5), 200.0)], axis=-1).astype(np.float32)
  np.testing.assert_allclose(run_bicubic_upscale(image, scale), np.broadcast_to(
      image[:1, :1], (6 * scale, 5 * scale, 2)), atol=1e-3)


def test_a_colour_matrix_folded_into_bicubic_subpixels_equals_the_matrix_after_upscaling():
  """Both are linear: mixing at the LR pixels (in the kernel) gives what mixing every HR pixel gives."""
  image = smooth_rgb(9, 11, seed=7)[..., :2].astype(np.float32)  # [H, W, 2]
  mix = np.array([[1.0, 0.5], [-0.3, 2.0], [0.0, -1.0]])  # [3, 2]
  np.testing.assert_allclose(run_bicubic_upscale(image, 3, mix), run_bicubic_upscale(image, 3) @ mix.T,
                             atol=1e-3)


def test_y_mode_output_has_the_networks_luminance_and_bicubic_chroma():
  """The merge of the paper's y mode: Y from the network, Cb and Cr upscaled by bicubic (both up to the
  rounding of R, G and B to 8 bits, and away from the few pixels that had to be clipped)."""
  model = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir('y', 3), 3, 'y')
  image = smooth_rgb(20, 24, seed=5)
  output = model.upscale(image).astype(np.float64)
  network_luma = 255.0 * model.network(model.network_input(image))[..., 0]
  lr_chroma = (image.astype(np.float64) @ colour.YCBCR_FROM_RGB[1:].T + 128.0).astype(np.float32)
  bicubic_chroma = run_bicubic_upscale(lr_chroma, 3)
  unclipped = ((output > 0) & (output < 255)).all(axis=-1)
  assert unclipped.mean() > 0.9
  output_ycbcr = output @ colour.YCBCR_FROM_RGB.T + colour.YCBCR_OFFSET
  rounding = 0.5 * np.abs(colour.YCBCR_FROM_RGB).sum(axis=1) + 1e-3  # R, G, B each off by <= 0.5
  assert (np.abs(output_ycbcr[..., 0] - network_luma)[unclipped] <= rounding[0]).all()
  assert (np.abs(output_ycbcr[..., 1:] - bicubic_chroma)[unclipped] <= rounding[1:]).all()
  model.session.close()


def test_rgb_mode_output_is_the_networks_rounded(upscaler):
  model = upscaler(2, 'rgb')
  image = smooth_rgb(15, 11, seed=6)
  expected = colour.to_uint8(255.0 * model.network(model.network_input(image)))
  np.testing.assert_array_equal(model.upscale(image), expected)


def test_the_graphs_network_input_is_the_luminance_of_utils(upscaler):
  """The network sees in the graph what prepare_data.py trained it on (colour.luminance, in float64)."""
  image = smooth_rgb(9, 13, seed=7)
  np.testing.assert_allclose(upscaler(3, 'y').network_input(image)[..., 0], colour.luminance(image) / 255.0,
                             atol=1e-6)
