"""The patch file: training images cut into aligned low-/high-resolution patch pairs in HDF5, and read back.

For each image (x3, the blog's setting): crop the HR image to a multiple of 3, shrink it with Pillow's
bicubic filter to get the LR image, then cut 17x17 LR patches every 8 LR pixels together with the 51x51 HR
patches they cover (--downscales does the same for smaller copies of the image). The file holds

  input   uint8 [N, patch_size, patch_size, C]                  LR patches
  label   uint8 [N, scale*patch_size, scale*patch_size, C]      HR patches

with attributes scale, patch_size, stride, channels and downscales (and the lr_jpeg_* settings of
compressed LR), so that train.py can refuse data made for another setting. With --lr_jpeg_quality, each LR
image is saved as a JPEG and decoded before its patches are cut, as photos from cameras and the web arrive. Patches are appended image by image (memory stays bounded by one image) to a
temporary file that is renamed only when complete. prepare_data.py writes the file; train.py reads it
with open_patches, into memory or, for a file larger than its memory budget, streamed from disk.
"""
import collections
import hashlib
import math
import os
import sys
import time

import h5py
import numpy as np
from absl import flags
from tqdm import tqdm

from superres import colour
from superres import files
from superres import image_files
from superres import model_flags
from superres import pairs


def define_patch_flags():
  """--images_dir, --patch_size and --stride: what patches are cut from, and how (also train.py's)."""
  flags.DEFINE_string('images_dir', 'images',
                      'Folder of training images (.jpg/.jpeg/.png/.bmp), or a glob pattern such as '
                      '"BSD200/*[1-9].png"; several may be comma-separated.')
  flags.DEFINE_integer('patch_size', 17, 'Side of a low-resolution patch, in LR pixels.', lower_bound=1)
  flags.DEFINE_integer('stride', 8, 'Step between neighbouring LR patches, in LR pixels.', lower_bound=1)
  flags.DEFINE_list('downscales', ['1'],
                    'Scale augmentation: each training image is used at these sizes (factors in (0, 1], '
                    'comma-separated), shrunk by bicubic before its LR/HR pair is made. "1" uses the images '
                    'as they are (the blog); "1,0.9,0.8,0.7,0.6" adds four smaller copies (FSRCNN\'s '
                    'augmentation), about three times the patches.')
  flags.DEFINE_list('lr_jpeg_quality', [],
                    'Compressed LR: each LR image (one per image and --downscales factor) is saved as a JPEG '
                    'at a quality drawn from LO to HI (e.g. 50,95; one value: that quality) and decoded '
                    'before its patches are cut, as photos from cameras and the web arrive. Empty: clean '
                    'bicubic LR, as the paper trains.')
  flags.DEFINE_float('lr_jpeg_fraction', 1.0, 'With --lr_jpeg_quality: the share of (image, downscale) copies '
                     'that are compressed; the others stay clean, so that clean inputs stay in the mix.',
                     lower_bound=0, upper_bound=1)
  flags.DEFINE_integer('lr_jpeg_seed', 0, "With --lr_jpeg_quality: seed of each copy's draw (its quality and "
                       'whether it is compressed), made from the seed, its file name and its downscale alone.',
                       lower_bound=0)


def default_data_path(channels, scale):
  """Where prepare_data.py writes, and train.py looks for, the patches when no path is given."""
  return os.path.join('checkpoint', f'train_data_{channels}_x{scale}.h5')


CHUNK_PATCHES = 128  # HDF5 chunk length: big enough for fast reads, small enough to read a few at random


def parse_downscales(factors):
  """The --downscales list as floats in (0, 1], or an InputError naming the bad entry."""
  try:
    values = [float(factor) for factor in factors]
  except ValueError:
    values = []
  if not values or not all(0 < value <= 1 for value in values):
    raise files.InputError(f'--downscales={",".join(factors)}: give factors in (0, 1], e.g. 1,0.9,0.8')
  return values


LrJpeg = collections.namedtuple('LrJpeg', ['low', 'high', 'fraction', 'seed'])  # the --lr_jpeg_* flags


def parse_lr_jpeg(quality, fraction=1.0, seed=0):
  """The --lr_jpeg_* flags as an LrJpeg, or None for clean LR (no --lr_jpeg_quality); an InputError names a
  bad one."""
  if not quality:
    if fraction != 1:
      raise files.InputError(f'--lr_jpeg_fraction={fraction:g}: compresses nothing without --lr_jpeg_quality')
    return None
  qualities = pairs.parse_jpeg_qualities(quality, 'lr_jpeg_quality')
  if len(qualities) > 2 or qualities != sorted(qualities):
    raise files.InputError(f'--lr_jpeg_quality={",".join(quality)}: give LO,HI with LO <= HI, or one quality')
  return LrJpeg(qualities[0], qualities[-1], fraction, seed)


def lr_jpeg_quality(lr_jpeg, path, factor):
  """The JPEG quality of one (image, downscale) copy, or 0 for a copy left clean.

  Drawn from the seed, the file name and the factor alone, never from the image's place in the list: a
  subset or a reordering of the images gives each copy the same draw. The quality is drawn whether or not
  the copy is compressed, so a larger --lr_jpeg_fraction keeps the compressed copies of a smaller one.
  """
  key = hashlib.sha256(f'{os.path.basename(path)}\n{factor:g}'.encode()).digest()
  rng = np.random.default_rng([lr_jpeg.seed, int.from_bytes(key[:8], 'little')])
  compressed = rng.random() < lr_jpeg.fraction
  quality = int(rng.integers(lr_jpeg.low, lr_jpeg.high + 1))
  return quality if compressed else 0


def lr_jpeg_attributes(lr_jpeg):
  """The --lr_jpeg_* settings as a patch file's attributes and a run's config.json record them; none for
  clean LR, whose files and configs stay as they were before the flags existed."""
  if lr_jpeg is None:
    return {}
  return {'lr_jpeg_quality': f'{lr_jpeg.low},{lr_jpeg.high}', 'lr_jpeg_fraction': lr_jpeg.fraction,
          'lr_jpeg_seed': lr_jpeg.seed}


def data_attributes(scale, channels, patch_size, stride, downscales=(1.0,), lr_jpeg=None):
  """The attributes that identify what a data file was made for (checked by train.py)."""
  return {'scale': scale, 'channels': channels, 'patch_size': patch_size, 'stride': stride,
          'downscales': ','.join(f'{factor:g}' for factor in downscales), **lr_jpeg_attributes(lr_jpeg)}


# Files without the lr_jpeg_* attributes hold clean LR: written before they existed, or without the flags.
LR_JPEG_DEFAULTS = {'lr_jpeg_quality': '', 'lr_jpeg_fraction': 1.0, 'lr_jpeg_seed': 0}
# Files written before an attribute existed were made with its default.
ATTRIBUTE_DEFAULTS = {'downscales': '1', **LR_JPEG_DEFAULTS}


def _create_dataset(data_file, name, side, num_channels):
  return data_file.create_dataset(name, shape=(0, side, side, num_channels),
                                  maxshape=(None, side, side, num_channels), dtype='uint8',
                                  chunks=(CHUNK_PATCHES, side, side, num_channels))


def _append(dataset, patches):
  start = dataset.shape[0]
  dataset.resize(start + len(patches), axis=0)
  dataset[start:] = patches


class TooSmallError(files.InputError):
  """An image that gives no LR patch: skipped and counted apart from unreadable files."""


def _patches_of(path, scale, channels, patch_size, stride, downscales, lr_jpeg):
  """The LR and HR patches of one image file at each of its `downscales` sizes, and the JPEG quality of each
  copy that gave patches (0: clean LR; see lr_jpeg_quality). 'y' takes Y from the decoded RGB image, as
  from a camera's file.

  A copy too small for one patch gives none; an InputError says why the whole file gives none.
  """
  image = image_files.load_image(path)
  patch_pairs, lr_sizes, qualities = [], [], []
  for factor in downscales:
    shrunk = pairs.shrink(image, factor)
    lr_image, hr_image = pairs.make_lr_hr(shrunk, scale)
    lr_sizes.append(lr_image.size)
    if min(lr_image.size) >= patch_size:
      qualities.append(lr_jpeg_quality(lr_jpeg, path, factor) if lr_jpeg else 0)
      if qualities[-1]:
        lr_image = pairs.jpeg_round_trip(lr_image, qualities[-1])
      patch_pairs.append(pairs.extract_patch_pairs(colour.network_channels(lr_image, channels),
                                                   colour.network_channels(hr_image, channels),
                                                   patch_size, stride, scale))
  if not patch_pairs:
    lr_width, lr_height = max(lr_sizes)  # of the largest copy
    raise TooSmallError(
        f'{path}: image is smaller than one patch ({image.width}x{image.height} HR pixels give at most '
        f'{lr_width}x{lr_height} LR pixels at x{scale}, patch is {patch_size}x{patch_size})')
  return (np.concatenate([lr for lr, _ in patch_pairs]), np.concatenate([hr for _, hr in patch_pairs]),
          qualities)


def prepare(images_dir, output, scale, channels, patch_size, stride, downscales=(1.0,), lr_jpeg=None):
  """Writes the patch file and returns its one-line summary (lr_jpeg: compressed LR, see parse_lr_jpeg)."""
  started = time.time()
  paths = files.list_images(images_dir)
  files.ensure_writable_parent(output)
  num_channels = model_flags.CHANNEL_MODES[channels]
  skipped, qualities = [], []  # per copy that gave patches: its JPEG quality, 0 if clean
  with files.atomic_output(output) as temporary:
    with h5py.File(temporary, 'w') as data_file:
      lr_dataset = _create_dataset(data_file, 'input', patch_size, num_channels)
      hr_dataset = _create_dataset(data_file, 'label', patch_size * scale, num_channels)
      data_file.attrs.update(data_attributes(scale, channels, patch_size, stride, downscales, lr_jpeg))
      for path in tqdm(paths, desc='images', unit='image', leave=False, disable=None):  # a bar on a terminal only
        try:
          lr_patches, hr_patches, image_qualities = _patches_of(path, scale, channels, patch_size, stride,
                                                                downscales, lr_jpeg)
        except files.InputError as error:
          tqdm.write(f'skipped: {error}', file=sys.stderr)
          skipped.append('too small' if isinstance(error, TooSmallError) else 'unreadable')
          continue
        _append(lr_dataset, lr_patches)
        _append(hr_dataset, hr_patches)
        qualities += image_qualities
      num_patches = lr_dataset.shape[0]
    if num_patches == 0:
      raise files.InputError(f'{images_dir}: no usable image (every one was unreadable or smaller than '
                             f'one {patch_size}x{patch_size} LR patch); nothing written')
  reasons = ', '.join(f'{skipped.count(reason)} {reason}' for reason in sorted(set(skipped)))
  used = len(paths) - len(skipped)
  return (f'{output}: {used} image{"s" if used != 1 else ""} used, {len(skipped)} skipped'
          f'{f" ({reasons})" if skipped else ""}, {num_patches} patches, '
          f'{_lr_jpeg_summary(lr_jpeg, qualities) if lr_jpeg else ""}'
          f'{os.path.getsize(output) / 2**20:.1f} MiB, {time.time() - started:.1f} s')


def _lr_jpeg_summary(lr_jpeg, qualities):
  """The summary's part on compressed LR: how many copies are JPEG, at which qualities."""
  compressed = [quality for quality in qualities if quality]
  drawn = f', drawn quality {min(compressed)} to {max(compressed)}' if compressed else ''
  return (f'LR JPEG in {len(compressed)} of {len(qualities)} copies (--lr_jpeg_quality={lr_jpeg.low},'
          f'{lr_jpeg.high} --lr_jpeg_fraction={lr_jpeg.fraction:g}{drawn}), ')


# ---------------------------------------------------------------------------------------------------------
# Reading the patch file back (train.py)
# ---------------------------------------------------------------------------------------------------------

class InMemoryPatches:
  """All patches in memory; an epoch visits them in one random permutation."""

  def __init__(self, data_file):
    self.lr_data, self.hr_data = data_file['input'][:], data_file['label'][:]

  def __len__(self):
    return len(self.lr_data)

  def epoch_order(self, rng):
    return rng.permutation(len(self))

  def read(self, indices):
    return self.lr_data[indices], self.hr_data[indices]


class StreamedPatches:
  """Patches read from the file a block of chunks at a time, for files larger than the memory budget.

  An epoch shuffles the HDF5 chunks, groups them into blocks that fit half the budget, and visits each
  block's patches in a random order: every patch once per epoch, in an order that mixes patches across the
  whole file, while at most two blocks (the current one and the one a batch may straddle into) are held.
  """

  def __init__(self, data_file, max_bytes):
    self.lr_dataset, self.hr_dataset = data_file['input'], data_file['label']
    self.chunk = self.lr_dataset.chunks[0]
    patch_bytes = self.lr_dataset[0].nbytes + self.hr_dataset[0].nbytes
    self.chunks_per_block = max(1, int(max_bytes // 2 // (patch_bytes * self.chunk)))
    self.blocks = []  # per block of this epoch: the sorted patch indices it holds
    self.block_of_patch = np.zeros(len(self), np.int64)
    self.loaded = {}  # block number -> (lr, hr) arrays, at most two

  def __len__(self):
    return self.lr_dataset.shape[0]

  def epoch_order(self, rng):
    chunks = rng.permutation(math.ceil(len(self) / self.chunk))
    self.blocks = [np.concatenate([np.arange(chunk * self.chunk, min((chunk + 1) * self.chunk, len(self)))
                                   for chunk in np.sort(chunks[start:start + self.chunks_per_block])])
                   for start in range(0, len(chunks), self.chunks_per_block)]
    for number, patches in enumerate(self.blocks):
      self.block_of_patch[patches] = number
    self.loaded = {}
    return np.concatenate([rng.permutation(patches) for patches in self.blocks])

  def read(self, indices):
    """The patches at `indices`, which lie in one block or, where a batch straddles, consecutive ones."""
    numbers = self.block_of_patch[indices]
    lr_batch = np.empty((len(indices),) + self.lr_dataset.shape[1:], np.uint8)
    hr_batch = np.empty((len(indices),) + self.hr_dataset.shape[1:], np.uint8)
    for number in np.unique(numbers):
      in_block = numbers == number
      rows = np.searchsorted(self.blocks[number], indices[in_block])
      block_lr, block_hr = self._block(number)
      lr_batch[in_block], hr_batch[in_block] = block_lr[rows], block_hr[rows]
    return lr_batch, hr_batch

  def _block(self, number):
    if number not in self.loaded:
      self.loaded = {key: value for key, value in self.loaded.items() if key == number - 1}
      slices = [slice(chunk * self.chunk, min((chunk + 1) * self.chunk, len(self)))
                for chunk in np.unique(self.blocks[number] // self.chunk)]
      self.loaded[number] = tuple(np.concatenate([dataset[part] for part in slices])
                                  for dataset in (self.lr_dataset, self.hr_dataset))
    return self.loaded[number]


def settings_of(data_file):
  """The attributes an open patch file was made with, as plain Python values (defaults for older files)."""
  attributes = {key: value.item() if hasattr(value, 'item') else value
                for key, value in data_file.attrs.items()}
  return dict(ATTRIBUTE_DEFAULTS, **attributes)


def _as_flags(attributes):
  """Attributes as the flags that make them; the lr_jpeg_* ones only for compressed LR."""
  shown = {key: value for key, value in attributes.items()
           if key not in LR_JPEG_DEFAULTS or attributes.get('lr_jpeg_quality')}
  return ' '.join(f'--{key}={value:g}' if isinstance(value, float) else f'--{key}={value}'
                  for key, value in sorted(shown.items()))


def not_a_patch_file(path, error):
  """The one message for a file that h5py cannot read as prepare_data.py's output."""
  return files.InputError(f'{path}: not a patch file from prepare_data.py ({error})')


def read_settings(path):
  """The settings the patch file at `path` was made with, as open_patches expects them."""
  try:
    with h5py.File(path, 'r') as data_file:
      return settings_of(data_file)
  except OSError as error:
    raise not_a_patch_file(path, error) from None


def open_patches(path, expected_attributes, max_bytes):
  """The patch file as InMemoryPatches if it fits `max_bytes`, else as StreamedPatches (file kept open).

  Stops with a clear message when the file was prepared for another scale, channel mode, patch or stride.
  """
  try:
    data_file = h5py.File(path, 'r')
  except OSError as error:
    raise not_a_patch_file(path, error) from None
  try:
    settings = settings_of(data_file)
    expected_attributes = dict(LR_JPEG_DEFAULTS, **expected_attributes)  # clean LR unless told otherwise
    attributes = {key: settings[key] for key in expected_attributes if key in settings}
    if attributes != expected_attributes:
      found, wanted = _as_flags(attributes), _as_flags(expected_attributes)
      raise files.InputError(f'{path}: data was prepared with {found or "unknown settings"}, '
                             f'not {wanted}; prepare it again or pass another --data')
    size = data_file['input'].nbytes + data_file['label'].nbytes
    if size <= max_bytes:
      with data_file:
        return InMemoryPatches(data_file)
    if data_file['input'].chunks is None:
      raise files.InputError(f'{path}: not chunked (not written by prepare_data.py), so it cannot be streamed; '
                             f'give --max_memory={math.ceil(size / 2**20)} or more')
    return StreamedPatches(data_file, max_bytes)
  except (OSError, KeyError) as error:
    data_file.close()
    raise not_a_patch_file(path, error) from None
  except files.InputError:
    data_file.close()
    raise
