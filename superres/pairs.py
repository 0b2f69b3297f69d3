"""Low- and high-resolution pairs: the crop, the bicubic downscale and the aligned patches of the SR protocol,
and the JPEG round trip that makes an LR image look like the photos users upscale."""
import io

import numpy as np
from PIL import Image

from superres import files
from superres import image_files


def modcrop(image, scale):
  """Crops a PIL image at the right and bottom to a multiple of `scale` (no resampling, no distortion)."""
  width, height = image.size
  return image.crop((0, 0, width - width % scale, height - height % scale))


def bicubic_resize(image, size):
  """Pillow's bicubic resampling (a = -0.5, antialiased when shrinking, like MATLAB's imresize).

  To no pixels on a side (the LR image of a strip narrower than r, e.g. 1x2000 at x3), an empty image:
  Pillow refuses that resize, and the callers' size checks then name the file as too small.
  """
  if min(size) == 0:
    return Image.new(image.mode, size)
  return image.resize(size, Image.BICUBIC)


def colour_mode(image):
  """'L' for a gray image (1-bit, L, LA), else 'RGB': the plain mode its pixels are processed in."""
  return 'L' if image.mode in ('1', 'L', 'LA') else 'RGB'


def shrink(image, factor):
  """The image shrunk by `factor` (<= 1) with bicubic, as plain L or RGB (see make_lr_hr); 1 keeps it."""
  if factor == 1:
    return image
  image = image.convert(colour_mode(image))
  return bicubic_resize(image, (max(1, round(image.width * factor)), max(1, round(image.height * factor))))


def make_lr_hr(image, scale):
  """The (LR, HR) pair of the evaluation protocol: HR cropped to a multiple of r, LR = bicubic downscale.

  The image is first made plain grayscale or RGB: Pillow resizes palette and 1-bit images with NEAREST
  and RGBA with premultiplied alpha, either of which would misalign the LR image with its HR image.
  """
  image = image.convert(colour_mode(image))
  hr_image = modcrop(image, scale)
  lr_image = bicubic_resize(hr_image, (hr_image.width // scale, hr_image.height // scale))
  return lr_image, hr_image


MIN_SCORED_LR_SIDE = 8  # the HR image less its border of r pixels a side still holds SSIM's 11x11 window


def ground_truth_pair(path, scale):
  """The (LR, HR) pair of a ground-truth image file for evaluation or validation, big enough to score."""
  lr_image, hr_image = make_lr_hr(image_files.load_image(path), scale)
  if min(lr_image.size) < MIN_SCORED_LR_SIDE:
    raise files.InputError(f'{path}: image is too small to evaluate at x{scale}')
  return lr_image, hr_image


MAX_JPEG_QUALITY = 100  # Pillow's scale: 1 (worst) to 100; cameras and the web mostly use 75 to 95


def jpeg_round_trip(image, quality):
  """The PIL image as a JPEG file at `quality` holds it, decoded again: what a camera or a web page hands over.

  Pillow's encoder with its defaults (4:2:0 chroma subsampling for RGB), in memory, on the whole image so
  that the 8x8 blocks sit where a real JPEG has them. The image keeps its size and mode (L or RGB).
  """
  encoded = io.BytesIO()
  image.save(encoded, format='JPEG', quality=quality)
  with Image.open(encoded) as decoded:
    return decoded.convert(image.mode)


def parse_jpeg_qualities(values, flag, lowest=1):
  """The integers of a JPEG quality flag (a list of strings), each in [lowest, 100], or an InputError naming
  the flag."""
  return files.parse_integers(values, flag, lowest, MAX_JPEG_QUALITY, 'JPEG qualities')


def extract_patch_pairs(lr_array, hr_array, patch_size, stride, scale):
  """Cuts aligned patches: LR [N, p, p, C] at LR `stride`, and the HR [N, rp, rp, C] patches they cover.

  The LR patch at (top, left) covers exactly the HR pixels (r*top ... r*(top+p)-1, r*left ... r*(left+p)-1),
  because LR pixel i is the bicubic average around HR pixels r*i ... r*i + r - 1.
  """
  height, width = lr_array.shape[:2]
  corners = [(top, left) for top in range(0, height - patch_size + 1, stride)
             for left in range(0, width - patch_size + 1, stride)]
  hr_size = patch_size * scale
  lr_patches = np.stack([lr_array[top:top + patch_size, left:left + patch_size] for top, left in corners])
  hr_patches = np.stack([hr_array[top * scale:top * scale + hr_size, left * scale:left * scale + hr_size]
                         for top, left in corners])
  return lr_patches, hr_patches
