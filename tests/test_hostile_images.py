"""A generated matrix of image files (issue 29, item 6): every size from 1x1 to 8x8 and strips of extreme
aspect ratio (1x2000, 2000x1 ...), every mode Pillow writes in every format that writes it (PNG, JPEG, BMP,
GIF, TIFF, WebP, JPEG 2000, under an extension the scripts take), and files that are not what they claim.

Through prepare_data.py (x2 to x4, with --downscales), generate.py --input, --eval_dir and train.py's
--val_dir (evaluation.validation_pairs), nothing raises: prepare_data.py and generate.py use or write each
file, or name it on one 'skipped: <file>: <reason>' line, and count it. --eval_dir and --val_dir take no
file out of the set they score: the first unusable one ends the run with its one 'error:' line (a mean over
4 of Set5's 5 images is not Set5's score).

The matrix once found what no earlier test had: a strip narrower than r pixels (1x2000 at x3, or a
--downscales copy of a 4-pixel strip) made Pillow raise ValueError on a resize to 0 pixels, a traceback.
"""
import io
import os
import struct
import types
import zlib

import numpy as np
import pytest
from PIL import Image

from superres import evaluation
from superres import files
from superres import image_files

SIZES = [(width, height) for width in range(1, 9) for height in range(1, 9)]
STRIPS = [(1, 2000), (2000, 1), (2, 700), (700, 2), (4, 60), (60, 4)]  # 4 wide: 2 at --downscales 0.6
MODES = ('1', 'L', 'P', 'RGB', 'RGBA', 'CMYK', 'YCbCr', 'LAB', 'HSV', 'I', 'F', 'LA', 'PA', 'RGBX', 'RGBa', 'La',
         'I;16')
FORMATS = {'PNG': '.png', 'JPEG': '.jpg', 'BMP': '.bmp', 'GIF': '.png', 'TIFF': '.png', 'WEBP': '.jpg',
           'JPEG2000': '.jpg'}  # the ones the scripts do not take by name come under another one's extension
MODE_SIZE = (26, 20)  # of the modes' files: LR patches at x2 to x4, and a few of the smaller copies too
PATCH_SIZE, STRIDE = 2, 2


def random_rgb(width, height, seed=0):
  return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def in_mode(image, mode):
  """The RGB image as Pillow holds it in `mode` (16-bit gray scaled to its full range)."""
  if mode == 'I;16':
    return Image.fromarray(np.asarray(image.convert('L')).astype(np.uint16) * 257)
  if mode in ('PA', 'La', 'RGBa'):  # by way of the mode they add to
    return image.convert({'PA': 'P', 'La': 'LA', 'RGBa': 'RGBA'}[mode]).convert(mode)
  return image.convert(mode)


def encoded(image, image_format, **options):
  buffer = io.BytesIO()
  image.save(buffer, format=image_format, **options)
  return buffer.getvalue()


def png_with_chunk(image, kind, data):
  """A PNG of the image with one more chunk before its pixels (an eXIf or iCCP that Pillow would not write)."""
  png = encoded(image, 'PNG')
  header_end = 8 + 25  # signature, IHDR
  chunk = struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
  return png[:header_end] + chunk + png[header_end:]


def oddities(photo):
  """{name: bytes} of files that are not what they claim, or carry something broken besides their pixels."""
  frames = [random_rgb(*MODE_SIZE, seed) for seed in range(3)]
  turned = Image.Exif()
  turned[image_files.EXIF_ORIENTATION] = 6  # a quarter turn: a 1x9 strip becomes 9x1
  return {
      'animated_gif.png': encoded(frames[0], 'GIF', save_all=True, append_images=frames[1:]),
      'animated_png.png': encoded(frames[0], 'PNG', save_all=True, append_images=frames[1:]),
      'animated_webp.jpg': encoded(frames[0], 'WEBP', save_all=True, append_images=frames[1:]),
      'multi_page.png': encoded(frames[0], 'TIFF', save_all=True, append_images=[random_rgb(1, 2000)]),
      'jpeg_named.png': encoded(photo, 'JPEG'),
      'malformed_exif.png': png_with_chunk(photo, b'eXIf', b'not a TIFF header'),
      'truncated_exif.jpg': encoded(photo, 'JPEG', exif=turned.tobytes()[:20]),
      'huge_icc_profile.png': png_with_chunk(photo, b'iCCP', b'icc\0\0' + zlib.compress(bytes(3 << 20))),
      'turned_strip.jpg': encoded(random_rgb(1, 9), 'JPEG', exif=turned.tobytes()),
      'palette_alpha.png': encoded(photo.convert('P'), 'PNG', transparency=bytes(range(256))),
      'text.jpg': b'a note, not a photo\n' * 20,
      'zero_length.png': b'',
  }


def write_matrix(folder):
  """Writes the matrix into `folder`; returns the paths of its entries (str), sorted."""
  folder.mkdir()
  for width, height in SIZES + STRIPS:
    random_rgb(width, height).save(folder / f'size_{width}x{height}.png')
  photo = random_rgb(*MODE_SIZE)
  for mode in MODES:
    image = in_mode(photo, mode)
    for image_format, extension in FORMATS.items():
      try:
        data = encoded(image, image_format)
      except (OSError, ValueError, KeyError):  # a mode this format cannot hold
        continue
      (folder / f'mode_{mode.replace(";", "_")}_{image_format.lower()}{extension}').write_bytes(data)
  for name, data in oddities(photo).items():
    (folder / name).write_bytes(data)
  (folder / 'folder.png').mkdir()
  os.symlink('loop_b.png', folder / 'loop_a.png')
  os.symlink('loop_a.png', folder / 'loop_b.png')
  return [str(path) for path in sorted(folder.iterdir())]


@pytest.fixture(scope='module')
def matrix(tmp_path_factory):
  return write_matrix(tmp_path_factory.mktemp('hostile') / 'matrix')


def run_main(capsys, main_in_process, *args):
  """A script's main() in this process: (exit code, stdout, stderr). An exception other than SystemExit,
  a traceback for a user, fails the test where it happens."""
  capsys.readouterr()  # (whatever earlier steps printed)
  try:
    main_in_process(*args)
    code = 0
  except SystemExit as stopped:
    code = stopped.code
  printed = capsys.readouterr()
  return types.SimpleNamespace(code=code, out=printed.out, err=printed.err)


def skipped_lines(stderr, paths):
  """{path: its 'skipped: ' line} for the paths named on one; a path named on more than one line fails."""
  lines = [line for line in stderr.replace('\r', '\n').splitlines() if line.startswith('skipped: ')]
  named = {}
  for path in paths:
    mine = [line for line in lines if line.startswith(f'skipped: {path}: ')]
    assert len(mine) <= 1, mine
    if mine:
      named[path] = mine[0]
  assert len(named) == len(lines), 'a skipped: line that names no file of the matrix'
  return named


def pillow_warnings(recorded):
  """Pillow's warnings among those recorded: each would be two stray lines on a user's stderr."""
  return [f'{warning.category.__name__}: {warning.message}' for warning in recorded
          if f'{os.sep}PIL{os.sep}' in warning.filename]


def reason_of(path):
  """What load_image says of a file ('' if it decodes): the reason its skipped: line must give."""
  try:
    image_files.load_image(path)
  except files.InputError as error:
    return str(error)
  return ''


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_prepare_data_uses_or_names_and_counts_every_file_of_the_matrix(
    tmp_path, matrix, main_in_process, capsys, recwarn, scale):
  output = tmp_path / 'patches.h5'
  result = run_main(capsys, main_in_process, 'prepare_data', f'--images_dir={os.path.dirname(matrix[0])}',
                    f'--output={output}', f'--scale={scale}', f'--patch_size={PATCH_SIZE}', f'--stride={STRIDE}',
                    '--downscales=1,0.9,0.8,0.7,0.6')
  assert result.code == 0, result.err
  named = skipped_lines(result.err, matrix)
  too_small = [path for path, line in named.items() if 'smaller than one patch' in line]
  for path in matrix:
    reason = reason_of(path)
    if reason:
      assert named[path] == f'skipped: {reason}', path
    elif path in named:  # decodes, but gives no patch
      assert path in too_small, named[path]
  strip = os.path.join(os.path.dirname(matrix[0]), 'size_1x2000.png')
  assert strip in too_small  # 1 pixel wide: no LR pixel across at any scale
  used, skipped = len(matrix) - len(named), len(named)
  assert (f'{output}: {used} images used, {skipped} skipped ({len(too_small)} too small, '
          f'{skipped - len(too_small)} unreadable)' in result.out), result.out
  assert pillow_warnings(recwarn) == []


def test_generate_writes_or_names_and_counts_every_file_of_the_matrix(
    tmp_path, matrix, main_in_process, capsys, recwarn):
  """The 'y' network: its colour path has the bicubic chroma, whose mirrored border a 1-pixel side tests."""
  output_dir = tmp_path / 'out'
  result = run_main(capsys, main_in_process, 'generate', '--random_weights', '--scale=3', '--channels=y',
                    f'--input={os.path.dirname(matrix[0])}', f'--output_dir={output_dir}')
  assert result.code == 1, result.err  # some failed
  named = skipped_lines(result.err, matrix)
  for path in matrix:
    reason, upscaled = reason_of(path), output_dir / f'{files.output_stem(path)}_x3.png'
    if reason:
      assert named[path] == f'skipped: {reason}' and not upscaled.exists(), path
    else:
      assert path not in named and f'{path} -> {upscaled}' in result.out.splitlines(), path
      width, height = image_files.load_image(path).size
      with Image.open(upscaled) as output:
        assert output.size == (3 * width, 3 * height), path
  assert result.out.splitlines()[-1] == f'{len(matrix) - len(named)} written, {len(named)} failed'
  assert [line for line in result.err.splitlines() if not line.startswith('skipped: ')] == []
  assert pillow_warnings(recwarn) == []


def test_what_is_unusable_and_why(matrix):
  """The reasons, pinned for a few files; everything else of the matrix decodes."""
  folder = os.path.dirname(matrix[0])
  loop = 'cannot be read (Too many levels of symbolic links)'
  expected = {
      **{name: '16/32-bit' for name in ('mode_I_16_png.png', 'mode_I_16_tiff.png', 'mode_I_16_jpeg2000.jpg',
                                        'mode_I_tiff.png', 'mode_F_tiff.png')},
      'huge_icc_profile.png': 'not a readable image', 'text.jpg': 'not a readable image',
      'zero_length.png': 'not a readable image', 'folder.png': 'cannot be read (Is a directory)',
      'loop_a.png': loop, 'loop_b.png': loop}
  reasons = {os.path.basename(path): reason_of(path) for path in matrix}
  assert sorted(name for name, reason in reasons.items() if reason) == sorted(expected)
  for name, reason in expected.items():
    assert reason in reasons[name], reasons[name]
  assert image_files.load_image(os.path.join(folder, 'turned_strip.jpg')).size == (9, 1)
  assert image_files.load_image(os.path.join(folder, 'malformed_exif.png')).size == MODE_SIZE


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_validation_and_evaluation_pairs_of_every_file_are_made_or_refused_with_one_reason(matrix, scale):
  """validation_pairs (train.py's --val_dir) and evaluate_image (--eval_dir) make a file's pair alike: a file
  gives one, or an InputError that names it."""
  for path in matrix:
    try:
      (lr, hr), = evaluation.validation_pairs(path, scale)
    except files.InputError as error:
      assert str(error).startswith(f'{path}: '), error
      continue
    assert hr.shape[:2] == (lr.shape[0] * scale, lr.shape[1] * scale)


def test_evaluation_stops_at_a_strip_too_narrow_for_the_scale_with_one_line(
    tmp_path, matrix, main_in_process, capsys):
  folder = tmp_path / 'ground_truth'
  folder.mkdir()
  random_rgb(40, 40).save(folder / 'a_good.png')
  strip = folder / 'b_strip.png'
  strip.write_bytes(open(os.path.join(os.path.dirname(matrix[0]), 'size_2x700.png'), 'rb').read())
  result = run_main(capsys, main_in_process, 'generate', '--random_weights', '--scale=3', '--channels=y',
                    f'--eval_dir={folder}', f'--output_dir={tmp_path / "out"}')
  assert result.code == 1
  assert result.err.splitlines() == [f'error: {strip}: image is too small to evaluate at x3'], result.err
