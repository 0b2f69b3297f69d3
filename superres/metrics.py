"""PSNR and SSIM on the Y channel, as the SR literature scores (MATLAB's conventions), in NumPy."""
import numpy as np

from superres import colour


def _crop_border(image, border):
  return image[border:-border, border:-border] if border > 0 else image


def psnr_y(reference, test, border):
  """PSNR in dB between the Y channels of two uint8 images, peak 255."""
  reference = _crop_border(colour.luminance(reference), border)
  test = _crop_border(colour.luminance(test), border)
  mse = np.mean((reference - test) ** 2)
  return float('inf') if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_filter_valid(image, window):
  """Separable 2-D filtering that keeps only fully covered positions (MATLAB's filter2 'valid')."""
  size = len(window)
  rows = np.lib.stride_tricks.sliding_window_view(image, size, axis=0) @ window
  return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1) @ window


def ssim_y(reference, test, border, window_size=11, sigma=1.5, k1=0.01, k2=0.03, peak=255.0):
  """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) between the Y channels of two images."""
  reference = _crop_border(colour.luminance(reference), border)
  test = _crop_border(colour.luminance(test), border)
  offsets = np.arange(window_size) - (window_size - 1) / 2.0
  window = np.exp(-offsets ** 2 / (2.0 * sigma ** 2))
  window /= window.sum()
  c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
  mean_ref = _gaussian_filter_valid(reference, window)
  mean_test = _gaussian_filter_valid(test, window)
  var_ref = _gaussian_filter_valid(reference * reference, window) - mean_ref ** 2
  var_test = _gaussian_filter_valid(test * test, window) - mean_test ** 2
  covariance = _gaussian_filter_valid(reference * test, window) - mean_ref * mean_test
  ssim_map = ((2 * mean_ref * mean_test + c1) * (2 * covariance + c2)
              / ((mean_ref ** 2 + mean_test ** 2 + c1) * (var_ref + var_test + c2)))
  return float(ssim_map.mean())
