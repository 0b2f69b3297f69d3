"""PSNR and SSIM on Y must agree with scikit-image, so reported scores are comparable with the literature."""
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from superres import colour
from superres import metrics


def crop(image, border):
  return image[border:image.shape[0] - border, border:image.shape[1] - border]


def degraded_pair(make_image, seed, noise):
  """A smooth 64x48 RGB reference and a copy with Gaussian noise of the given strength."""
  reference = np.asarray(make_image(64, 48, seed=seed))
  rng = np.random.default_rng(seed + 1000)
  test = np.clip(np.rint(reference + rng.normal(0.0, noise, reference.shape)), 0, 255).astype(np.uint8)
  return reference, test


CASES = [(seed, noise, border) for seed, noise in [(0, 2.0), (1, 8.0), (2, 25.0)] for border in (0, 3, 4)]


def test_luminance_is_the_bt601_studio_range_formula(reference_luminance):
  rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
  np.testing.assert_allclose(colour.luminance(rgb), reference_luminance(rgb), atol=1e-9)
  np.testing.assert_allclose(colour.luminance(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)),
                             [[16.0, 235.0]], atol=1e-9)


@pytest.mark.parametrize('seed,noise,border', CASES)
def test_psnr_y_agrees_with_scikit_image(seed, noise, border, make_image, reference_luminance):
  reference, test = degraded_pair(make_image, seed, noise)
  expected = peak_signal_noise_ratio(crop(reference_luminance(reference), border),
                                     crop(reference_luminance(test), border), data_range=255)
  assert metrics.psnr_y(reference, test, border) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize('seed,noise,border', CASES)
def test_ssim_y_agrees_with_scikit_image(seed, noise, border, make_image, reference_luminance):
  """Wang et al.'s SSIM as scikit-image computes it with the paper's settings (Gaussian window, sigma 1.5,
  population covariance)."""
  reference, test = degraded_pair(make_image, seed, noise)
  expected = structural_similarity(crop(reference_luminance(reference), border),
                                   crop(reference_luminance(test), border), gaussian_weights=True,
                                   sigma=1.5, use_sample_covariance=False, data_range=255)
  assert metrics.ssim_y(reference, test, border) == pytest.approx(expected, abs=1e-3)


def test_grayscale_images_are_scored_on_their_gray_level(make_image):
  """A gray image's level is its Y (as the SR literature's MATLAB scripts do), not 16 + 219/255 of it."""
  reference, test = (image[..., 0] for image in degraded_pair(make_image, 3, 6.0))
  assert metrics.psnr_y(reference, test, 2) == pytest.approx(
      peak_signal_noise_ratio(crop(reference.astype(np.float64), 2), crop(test.astype(np.float64), 2),
                              data_range=255), abs=0.01)
  assert metrics.ssim_y(reference, test, 2) == pytest.approx(
      structural_similarity(crop(reference.astype(np.float64), 2), crop(test.astype(np.float64), 2),
                            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255),
      abs=1e-3)


def test_identical_images_score_infinite_psnr_and_unit_ssim(make_image):
  image = np.asarray(make_image(40, 32))
  assert metrics.psnr_y(image, image, 3) == float('inf')
  assert metrics.ssim_y(image, image, 3) == pytest.approx(1.0, abs=1e-9)
