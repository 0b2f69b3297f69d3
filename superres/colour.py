"""Colour: ITU-R BT.601 YCbCr as MATLAB's rgb2ycbcr, and what the network sees of an image (RGB or Y)."""
import numpy as np

YCBCR_FROM_RGB = np.array([[65.481, 128.553, 24.966],  # Y  } from R, G, B in [0, 255];
                           [-37.797, -74.203, 112.0],  # Cb } each row of Cb and Cr sums to 0,
                           [112.0, -93.786, -18.214]]) / 255.0  # Cr } the row of Y to 219/255
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
RGB_FROM_YCBCR = np.linalg.inv(YCBCR_FROM_RGB)  # R, G, B = RGB_FROM_YCBCR @ ((Y, Cb, Cr) - YCBCR_OFFSET)


def luminance(image):
  """Y of an [H, W, 3] RGB or [H, W] grayscale uint8 image, as float64 in [0, 255].

  A grayscale image is already luminance: its gray level is used as Y unchanged, as the MATLAB evaluation
  scripts of the SR literature do (this is what makes Set14's bicubic baseline 27.55 dB at x3).
  """
  image = np.asarray(image, np.float64)
  if image.ndim == 2:
    return image
  return YCBCR_OFFSET[0] + image @ YCBCR_FROM_RGB[0]


def to_uint8(values):
  """Rounds and clips float pixel values in [0, 255] to uint8."""
  rounded = np.rint(values)
  return np.clip(rounded, 0, 255, out=rounded).astype(np.uint8)


def network_channels(image, channels):
  """What the network sees of a PIL image: uint8 [H, W, 3] for 'rgb', uint8 [H, W, 1] luminance for 'y'."""
  if channels == 'rgb':
    return np.asarray(image.convert('RGB'))
  gray_or_rgb = np.asarray(image if image.mode == 'L' else image.convert('RGB'))
  return to_uint8(luminance(gray_or_rgb))[..., None]
