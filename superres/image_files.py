"""Image files in and out: decoding (upright, 8 bits, with a one-line error on anything unreadable) and a
fast parallel PNG writer.
"""
import concurrent.futures
import os
import struct
import warnings

import numpy as np
from isal import isal_zlib
from PIL import Image
from PIL import ImageOps

from superres import files

WORKERS = os.cpu_count() or 1
THREADS = concurrent.futures.ThreadPoolExecutor(WORKERS)  # for NumPy and ISA-L, which release the GIL

# Pillow modes that every reader here converts to its plain L or RGB (pairs.colour_mode) and, with alpha, LA or RGBA;
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
  between its two limits it only warns, which is left out here (such photos decode), as are its warnings on
  metadata (corrupt EXIF tags, an invalid APNG chunk): the pixels decode, and each warning would be two stray
  lines on stderr. A palette image with transparency comes back as RGBA, the same pixels: Pillow converts it
  to RGB (for the network and the LR images) with a warning otherwise.
  """
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      with Image.open(path) as image:
        image.load()
        image = upright(image)
        if image.mode == 'P' and 'transparency' in image.info:
          image = image.convert('RGBA')
  except Image.DecompressionBombError as error:
    raise files.InputError(f'{path}: too large to decode ({error})') from None
  except OSError as error:
    if error.errno is not None:  # the file itself: permissions, a folder with an image's name
      raise files.InputError(f'{path}: cannot be read ({error.strerror})') from None
    raise files.InputError(f'{path}: not a readable image ({error})') from None
  except Exception as error:  # pylint: disable=broad-except
    # Pillow's decoders raise many kinds on a corrupt file (SyntaxError, ValueError, EOFError, struct.error,
    # zlib.error, IndexError ...); the block above runs nothing but Pillow on the file's bytes.
    raise files.InputError(f'{path}: not a readable image ({type(error).__name__}: {error})') from None
  if image.mode in ('I', 'F') or image.mode.startswith('I;'):
    raise files.InputError(f'{path}: {image.mode} images (16/32-bit) are not supported; '
                     f'convert to 8 bits per channel first')
  if image.mode not in SUPPORTED_MODES:
    raise files.InputError(f'{path}: {image.mode} images are not supported; convert to RGB first')
  return image


def upright(image):
  """The decoded image turned as its EXIF orientation tag says, without the tag; itself if it has none, or
  if its EXIF block is malformed (as viewers show such a file: its pixels are fine)."""
  try:
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
  except (SyntaxError, struct.error, ValueError):  # what Pillow's EXIF parser raises on malformed data
    return image
  if orientation not in range(2, 9):
    return image
  return ImageOps.exif_transpose(image)


SAMPLE_PHOTO = 'astronaut'  # skimage.data.astronaut(): a 512x512 photo, inside scikit-image's wheel


def sample_photo():
  """The bundled sample photo, as a PIL image (scikit-image is imported only when it is needed)."""
  from skimage import data  # pylint: disable=import-outside-toplevel
  return Image.fromarray(getattr(data, SAMPLE_PHOTO)())


def save_png(image, path, icc_profile=None):
  """Writes a PIL image (L, LA, RGB or RGBA) or uint8 array as PNG via a temporary file (files.atomic_output),
  with `icc_profile` (bytes) if given and it fits (write_png)."""
  with files.atomic_output(path) as temporary:
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
