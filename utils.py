"""Helpers shared by the scripts and modules: files and errors, PNG writing, colour, LR/HR pairs, metrics.

Everything here is NumPy, Pillow, ISA-L (PNG compression), absl flags and the standard library, so the data
pipeline and the evaluation can be read (and tested) without TensorFlow.
"""
import concurrent.futures
import contextlib
import glob
import json
import os
import shutil
import signal
import struct
import sys
import warnings

import numpy as np
from absl import flags
from isal import isal_zlib
from PIL import Image
from PIL import ImageOps

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
CHANNEL_MODES = {'rgb': 3, 'y': 1}  # --channels -> number of channels the network sees
WORKERS = os.cpu_count() or 1
THREADS = concurrent.futures.ThreadPoolExecutor(WORKERS)  # for NumPy and ISA-L, which release the GIL


class InputError(Exception):
  """A problem with the user's input: reported as one line on stderr, without a traceback."""


class Terminated(KeyboardInterrupt):
  """SIGTERM (`kill`, a job scheduler, `docker stop`), raised as Ctrl-C's KeyboardInterrupt is: the same
  clean-up runs (atomic_output's temporary files removed, train.py's step saved), and exit_on_input_error
  reports it with exit code 143 instead of 130."""

  @staticmethod
  def raise_on_signal(signal_number, frame):
    del signal_number, frame  # Unused: a signal handler's signature.
    raise Terminated()


def exit_on_input_error(main):
  """Wraps an absl main so that an InputError ends the run with its message and exit code 1, and Ctrl-C or
  SIGTERM with one line and exit code 130 or 143 (128 + the signal's number, as shells report it), both
  without a traceback. An interrupt's message, if it carries one, is that line (train.py: how to resume)."""
  def wrapped(argv):
    previous = signal.signal(signal.SIGTERM, Terminated.raise_on_signal)
    try:
      return main(argv)
    except InputError as error:
      print(f'error: {error}', file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt as interrupt:
      number = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
      print(str(interrupt) or f'interrupted by {number.name}', file=sys.stderr)
      sys.exit(128 + number)
    finally:
      signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
  return wrapped


def define_model_flags():
  """--scale and --channels, which every script takes and every data file and checkpoint records."""
  flags.DEFINE_integer('scale', 3, 'Upscaling factor r (an integer >= 2).', lower_bound=2)
  flags.DEFINE_enum('channels', 'rgb', list(CHANNEL_MODES),
                    "'rgb': the network sees R, G and B (the blog); 'y': only luminance Y of YCbCr "
                    "(the paper).")


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_output(path):
  """Yields a temporary path beside `path` and renames it to `path` only if the block succeeds.

  A crash, a full disk or Ctrl-C therefore never leaves a half-written file under the final name, and an
  earlier complete file stays untouched until the new one is complete.
  """
  temporary = f'{path}.{os.getpid()}.tmp'
  try:
    yield temporary
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def replace_folder(staged, destination):
  """Puts the complete folder `staged` in place of `destination` (which may not exist yet) by renames, so
  that a failure before this point leaves an earlier folder as it was (shipped models, exports)."""
  retired = f'{destination}.{os.getpid()}.old'
  if os.path.exists(destination):
    os.rename(destination, retired)
  os.rename(staged, destination)
  shutil.rmtree(retired, ignore_errors=True)


def ensure_writable_parent(path):
  """ensure_writable_dir for the folder that the file `path` (if given) goes into: checked before the work
  whose result it holds, not after."""
  if path:
    ensure_writable_dir(os.path.dirname(os.path.abspath(path)))


def ensure_writable_dir(directory):
  """Creates `directory` if needed and checks that files can be written into it."""
  try:
    os.makedirs(directory, exist_ok=True)
    probe = os.path.join(directory, f'.write-test-{os.getpid()}')
    with open(probe, 'w'):
      pass
    os.remove(probe)
  except OSError as error:
    raise InputError(f'{directory}: output folder is not writable ({error.strerror})') from None


def list_images(spec, extensions=IMAGE_EXTENSIONS):
  """Image files named by `spec`: a file, a folder (sorted, non-recursive), a glob pattern such as
  `BSD200/*0.png` (sorted; how part of a folder is held out for validation without copying it), or a
  comma-separated list of these. In folders and patterns, only names with `extensions` count."""
  kinds = ', '.join(extensions[:-1]) + ' or ' + extensions[-1]  # for error messages
  paths = []
  for item in (part.strip() for part in spec.split(',')):
    if not item:
      continue
    if os.path.isdir(item):
      names = sorted(name for name in os.listdir(item) if name.lower().endswith(extensions))
      if not names:
        raise InputError(f'{item}: folder has no {kinds} files')
      paths.extend(os.path.join(item, name) for name in names)
    elif os.path.isfile(item):  # before the pattern test: a file may be named 'photo[1].png'
      paths.append(item)
    elif any(wildcard in item for wildcard in '*?['):
      matches = sorted(path for path in glob.glob(item) if path.lower().endswith(extensions))
      if not matches:
        raise InputError(f'{item}: pattern matches no {kinds} file')
      paths.extend(matches)
    else:
      raise InputError(f'{item}: no such file or folder')
  if not paths:
    raise InputError(f'{spec!r}: no input images given')
  return paths


def output_stem(path):
  """What the outputs made from an input image are named after: its file name without the extension."""
  return os.path.splitext(os.path.basename(path))[0]


# Pillow modes that every reader here converts to its plain L or RGB (colour_mode) and, with alpha, LA or RGBA;
# files decode to one of these or to 16/32-bit modes (refused), but a few rare ones (premultiplied 'La')
# would fail in a conversion halfway through a run.
SUPPORTED_MODES = ('1', 'L', 'LA', 'P', 'PA', 'RGB', 'RGBA', 'RGBX', 'CMYK', 'YCbCr', 'LAB')
EXIF_ORIENTATION = 0x0112  # the EXIF tag; 1 is upright, 2 to 8 a mirror and/or a quarter or half turn


def load_image(path):
  """Opens and fully decodes an image, upright, so that a truncated file fails here and not halfway through.

  Upright: a camera stores a portrait photo as landscape pixels and an EXIF orientation tag that tells
  viewers to turn it. The image is turned as the tag says (ImageOps.exif_transpose, which also drops the
  tag), so that every reader (generate.py, the evaluation, prepare_data.py, validation) gets what a viewer
  shows; an image without the tag is returned as decoded, not copied. Its ICC colour profile stays in
  image.info['icc_profile'], for inference.upscale_file to put into the output.

  Only 8 bits per channel: Pillow's conversions of 16- and 32-bit images to 8 bits clip instead of
  scaling, which would quietly turn most of an image white. Too large: Pillow refuses, from the header
  alone, an image of more than 2 * Image.MAX_IMAGE_PIXELS pixels (179 million), a decompression bomb;
  between its two limits it only warns, which is left out here (such photos decode).
  """
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      with Image.open(path) as image:
        image.load()
        image = upright(image)
  except Image.DecompressionBombError as error:
    raise InputError(f'{path}: too large to decode ({error})') from None
  except OSError as error:
    if error.errno is not None:  # the file itself: permissions, a folder with an image's name
      raise InputError(f'{path}: cannot be read ({error.strerror})') from None
    raise InputError(f'{path}: not a readable image ({error})') from None
  except Exception as error:  # pylint: disable=broad-except
    # Pillow's decoders raise many kinds on a corrupt file (SyntaxError, ValueError, EOFError, struct.error,
    # zlib.error, IndexError ...); the block above runs nothing but Pillow on the file's bytes.
    raise InputError(f'{path}: not a readable image ({type(error).__name__}: {error})') from None
  if image.mode in ('I', 'F') or image.mode.startswith('I;'):
    raise InputError(f'{path}: {image.mode} images (16/32-bit) are not supported; '
                     f'convert to 8 bits per channel first')
  if image.mode not in SUPPORTED_MODES:
    raise InputError(f'{path}: {image.mode} images are not supported; convert to RGB first')
  return image


def upright(image):
  """The decoded image turned as its EXIF orientation tag says, without the tag; itself if it has none."""
  if image.getexif().get(EXIF_ORIENTATION, 1) not in range(2, 9):
    return image
  return ImageOps.exif_transpose(image)


SAMPLE_PHOTO = 'astronaut'  # skimage.data.astronaut(): a 512x512 photo, inside scikit-image's wheel


def sample_photo():
  """The bundled sample photo, as a PIL image (scikit-image is imported only when it is needed)."""
  from skimage import data  # pylint: disable=import-outside-toplevel
  return Image.fromarray(getattr(data, SAMPLE_PHOTO)())


def save_png(image, path, icc_profile=None):
  """Writes a PIL image (L, LA, RGB or RGBA) or uint8 array as PNG via a temporary file (atomic_output),
  with `icc_profile` (bytes) if given and it fits (write_png)."""
  with atomic_output(path) as temporary:
    with open(temporary, 'wb') as stream:
      write_png(np.asarray(image), stream, icc_profile)


def in_row_blocks(function, height):
  """Calls function(rows) for one slice of the `height` rows per core, in parallel threads; returns the
  results in row order. For NumPy or deflate work on large images: both release the GIL."""
  bounds = np.linspace(0, height, min(WORKERS, height) + 1).astype(int)
  return list(THREADS.map(function, [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]))


PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: gray, gray+alpha, RGB, RGBA
PNG_BLOCK_BYTES = 1 << 22  # rows are compressed in independent blocks of up to 4 MiB, one per core at a time
PNG_DEFLATE_LEVEL = 1  # of ISA-L's 0 (fastest, largest) to 3
# Channels -> the colour space (bytes 16-19 of an ICC profile's header) that PNG allows an iCCP chunk to have
# with that colour type: a gray profile for gray images, an RGB one for colour.
ICC_COLOUR_SPACES = {1: b'GRAY', 2: b'GRAY', 3: b'RGB ', 4: b'RGB '}


def write_png(pixels, stream, icc_profile=None):
  """Writes uint8 [H, W] or [H, W, C] (C = 1 to 4) pixels to a binary stream as an 8-bit PNG.

  Not Pillow's encoder, for speed: Pillow tries five row filters on every row and compresses with zlib on
  one core, which made encoding the largest cost after the network in the end-to-end time of `generate.py
  --benchmark`. Here every row gets PNG's 'Sub' filter, and blocks of rows are deflated in parallel threads
  by ISA-L (Intel's deflate, faster than zlib at its fastest level; it releases the GIL): the benchmark
  reports both encoders' times (docs/PERFORMANCE.md). Each block is a deflate stream of its own ended by a
  sync flush, so that the blocks join into one valid stream (as pigz does); any PNG reader decodes it.

  `icc_profile`, the input photo's ICC profile, goes into an iCCP chunk, so that colour-managed viewers show
  the colours the photo had. Only a profile of the pixels' colour space (ICC_COLOUR_SPACES): PNG allows no
  other, and a CMYK photo's profile does not describe the RGB pixels Pillow converted it to; it is left out.
  """
  if pixels.dtype != np.uint8:
    raise ValueError(f'write_png takes uint8 pixels, not {pixels.dtype}')
  height, width = pixels.shape[:2]
  channels = 1 if pixels.ndim == 2 else pixels.shape[2]
  rows = pixels.reshape(height, width * channels)  # [H, W*C] bytes per row
  stream.write(b'\x89PNG\r\n\x1a\n')
  stream.write(_png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, PNG_COLOUR_TYPES[channels],
                                               0, 0, 0)))  # deflate, a filter type per row, no interlace
  if icc_profile is not None and icc_profile[16:20] == ICC_COLOUR_SPACES[channels]:
    # name, its terminating zero, compression method 0 (zlib) and the compressed profile; before any IDAT
    stream.write(_png_chunk(b'iCCP', b'ICC profile\0\0' + isal_zlib.compress(icc_profile)))
  stream.write(_png_chunk(b'IDAT', b'\x78\x01'))  # zlib header: deflate with a 32 KiB window
  checksum = isal_zlib.adler32(b'')
  group_rows = max(1, WORKERS * PNG_BLOCK_BYTES // rows.shape[1])  # one block per core at a time
  for top in range(0, height, group_rows):
    group = rows[top:top + group_rows]
    last_group = top + group_rows >= height
    blocks = in_row_blocks(lambda block: _deflate_rows(  # the last block of all finishes the stream
        group[block], channels, last_group and block.stop == len(group)), len(group))
    for filtered, compressed in blocks:
      checksum = isal_zlib.adler32(filtered, checksum)
      stream.write(_png_chunk(b'IDAT', compressed))
  stream.write(_png_chunk(b'IDAT', struct.pack('>I', checksum)))  # zlib trailer: adler32 of all rows
  stream.write(_png_chunk(b'IEND', b''))


def _png_chunk(kind, data):
  """A PNG chunk: length, 4-letter type, data and the CRC-32 of type and data."""
  checksum = isal_zlib.crc32(data, isal_zlib.crc32(kind))
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', checksum)


def _deflate_rows(rows, channels, last):
  """uint8 [h, W*C] rows -> (the filtered rows as PNG stores them, their raw deflate stream).

  PNG filter 1, 'Sub', stores each byte minus the byte of the pixel to its left (mod 256): smooth images
  become small numbers that compress well. Each row starts with its filter type.
  """
  filtered = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
  filtered[:, 0] = 1
  filtered[:, 1:channels + 1] = rows[:, :channels]
  np.subtract(rows[:, channels:], rows[:, :-channels], out=filtered[:, channels + 1:])
  compressor = isal_zlib.compressobj(  # a raw deflate stream: the zlib header and trailer are write_png's
      PNG_DEFLATE_LEVEL, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)
  compressed = compressor.compress(filtered) + compressor.flush(
      isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH)
  return filtered, compressed


def format_report(report):
  """A JSON report as aligned 'key: value' lines, floats to three decimals."""
  width = max(len(key) for key in report)
  return '\n'.join(f'{key:>{width}}: {value:.3f}' if isinstance(value, float) else f'{key:>{width}}: {value}'
                   for key, value in report.items())


def write_text(text, path):
  """Writes a text file through a temporary file (see atomic_output)."""
  with atomic_output(path) as temporary:
    with open(temporary, 'w') as stream:
      stream.write(text)


def write_json(data, path):
  write_text(json.dumps(data, indent=2) + '\n', path)


def append_json_line(record, path):
  """Appends one JSON record as a line: a log that survives a killed run up to its last complete line."""
  with open(path, 'a') as stream:
    stream.write(json.dumps(record) + '\n')


# ---------------------------------------------------------------------------------------------------------
# Colour: ITU-R BT.601 YCbCr as MATLAB's rgb2ycbcr (studio range, Y in [16, 235] for 8-bit input)
# ---------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------
# Low- and high-resolution pairs
# ---------------------------------------------------------------------------------------------------------

def modcrop(image, scale):
  """Crops a PIL image at the right and bottom to a multiple of `scale` (no resampling, no distortion)."""
  width, height = image.size
  return image.crop((0, 0, width - width % scale, height - height % scale))


def bicubic_resize(image, size):
  """Pillow's bicubic resampling (a = -0.5, antialiased when shrinking, like MATLAB's imresize)."""
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
  lr_image, hr_image = make_lr_hr(load_image(path), scale)
  if min(lr_image.size) < MIN_SCORED_LR_SIDE:
    raise InputError(f'{path}: image is too small to evaluate at x{scale}')
  return lr_image, hr_image


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


# ---------------------------------------------------------------------------------------------------------
# Metrics: PSNR and SSIM on the Y channel, with `border` pixels cropped on each side
# ---------------------------------------------------------------------------------------------------------

def _crop_border(image, border):
  return image[border:-border, border:-border] if border > 0 else image


def psnr_y(reference, test, border):
  """PSNR in dB between the Y channels of two uint8 images, peak 255."""
  reference = _crop_border(luminance(reference), border)
  test = _crop_border(luminance(test), border)
  mse = np.mean((reference - test) ** 2)
  return float('inf') if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_filter_valid(image, window):
  """Separable 2-D filtering that keeps only fully covered positions (MATLAB's filter2 'valid')."""
  size = len(window)
  rows = np.lib.stride_tricks.sliding_window_view(image, size, axis=0) @ window
  return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1) @ window


def ssim_y(reference, test, border, window_size=11, sigma=1.5, k1=0.01, k2=0.03, peak=255.0):
  """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) between the Y channels of two images."""
  reference = _crop_border(luminance(reference), border)
  test = _crop_border(luminance(test), border)
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
