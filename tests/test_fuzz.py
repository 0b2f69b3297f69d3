"""Hostile files: prepare_data.py and generate.py on one folder of everything that can go wrong with an
image file, beside two good photos (issue 20, items 5 and 6).

Nothing crashes: each file is used or written, or named on one line with its reason; the summaries count
them; generate.py fails the run (exit 1) because some failed, prepare_data.py does not (it had images).
"""
import io
import os
import struct
import types
import zlib

import numpy as np
import pytest
from PIL import Image

from superres import files
from superres import image_files
from conftest import smooth_rgb

SCALE, PATCH_SIZE, STRIDE = 3, 5, 4
WIDTH, HEIGHT = 30, 24  # of every decodable file but one_pixel.png: 10 x 8 LR pixels at x3, 2 x 1 patches
ROOT = hasattr(os, 'geteuid') and os.geteuid() == 0  # file permissions do not apply to root


def png_chunk(kind, data):
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def bomb_png(width=60000, height=60000):
  """A valid PNG header claiming width x height RGB pixels (10 GB decoded), with a few bytes of pixels."""
  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', header) + png_chunk(b'IDAT', zlib.compress(bytes(1000)))
          + png_chunk(b'IEND', b''))


def encoded(image, image_format, **options):
  buffer = io.BytesIO()
  image.save(buffer, format=image_format, **options)
  return buffer.getvalue()


def hostile_folder(folder, make_image):
  """Writes the files; returns {name: (generate.py's outcome, prepare_data.py's, a word of the reason)}.

  Outcomes: 'written' (generate) or 'used' (prepare_data); 'skipped', 'too small' and 'unreadable' end on
  a 'skipped:' line with the reason. Files that are odd but decodable (a format under another one's name,
  CMYK, palette with transparency, LA) are upscaled and used; a 1x1 image is upscaled, but gives no patch.
  """
  rgb = make_image(WIDTH, HEIGHT, seed=1)
  png, jpeg = encoded(rgb, 'PNG'), encoded(rgb, 'JPEG', quality=90)
  files = {
      'good_photo.png': (png, 'written', 'used', None),
      'good_scan.jpg': (encoded(make_image(WIDTH, HEIGHT, seed=2), 'JPEG'), 'written', 'used', None),
      'zero_bytes.png': (b'', 'skipped', 'unreadable', 'not a readable image'),
      'truncated_png.png': (png[:len(png) // 2], 'skipped', 'unreadable', 'not a readable image'),
      'truncated_jpeg.jpg': (jpeg[:len(jpeg) // 2], 'skipped', 'unreadable', 'not a readable image'),
      'gif_named.png': (encoded(make_image(WIDTH, HEIGHT, mode='P'), 'GIF'), 'written', 'used', None),
      'webp_named.jpg': (encoded(rgb, 'WEBP', lossless=True), 'written', 'used', None),
      'tiff_named.bmp': (encoded(rgb, 'TIFF'), 'written', 'used', None),
      'random_bytes.jpg': (np.random.default_rng(0).bytes(5000), 'skipped', 'unreadable',
                           'not a readable image'),
      'header_60000x60000.png': (bomb_png(), 'skipped', 'unreadable', 'too large'),
      'one_pixel.png': (encoded(make_image(1, 1), 'PNG'), 'written', 'too small', 'smaller than one patch'),
      'sixteen_bit.png': (encoded(Image.fromarray(np.full((HEIGHT, WIDTH), 40000, np.uint16)), 'PNG'),
                          'skipped', 'unreadable', '16/32-bit'),
      'cmyk.jpg': (encoded(rgb.convert('CMYK'), 'JPEG'), 'written', 'used', None),
      'palette_transparency.png': (encoded(make_image(WIDTH, HEIGHT, mode='P+transparency'), 'PNG'),
                                   'written', 'used', None),
      'gray_alpha.png': (encoded(make_image(WIDTH, HEIGHT, mode='LA'), 'PNG'), 'written', 'used', None),
      # As root the file is read like any other: its outcome is then a good file's.
      'no_permission.png': (png, 'written', 'used', None) if ROOT else (
          png, 'skipped', 'unreadable', 'Permission denied'),
  }
  for name, (data, *_) in files.items():
    (folder / name).write_bytes(data)
  os.chmod(folder / 'no_permission.png', 0)
  return {name: outcomes for name, (_, *outcomes) in files.items()}


def lines_naming(path, *outputs):
  return [line for output in outputs for line in output.splitlines() if str(path) in line]


def test_prepare_data_uses_or_names_every_hostile_file_and_counts_them(
    tmp_path, make_image, run_script, patch_count):
  folder, output = tmp_path / 'hostile', tmp_path / 'patches.h5'
  folder.mkdir()
  expected = hostile_folder(folder, make_image)
  result = run_script('prepare_data.py', f'--images_dir={folder}', f'--output={output}', f'--scale={SCALE}',
                      f'--patch_size={PATCH_SIZE}', f'--stride={STRIDE}')
  assert result.returncode == 0, result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  for name, (_, outcome, reason) in expected.items():
    named = lines_naming(folder / name, result.stdout, result.stderr)
    if outcome == 'used':
      assert named == [], (name, named)
    else:
      assert len(named) == 1 and named[0].startswith(f'skipped: {folder / name}: ') and reason in named[0], (
          name, named)
  used = [name for name, (_, outcome, _) in expected.items() if outcome == 'used']
  too_small = sum(outcome == 'too small' for _, outcome, _ in expected.values())
  unreadable = sum(outcome == 'unreadable' for _, outcome, _ in expected.values())
  patches = len(used) * patch_count(WIDTH, HEIGHT, SCALE, PATCH_SIZE, STRIDE)
  assert (f'{output}: {len(used)} images used, {too_small + unreadable} skipped ({too_small} too small, '
          f'{unreadable} unreadable), {patches} patches' in result.stdout), result.stdout


def test_generate_writes_or_names_every_hostile_file_counts_them_and_fails(tmp_path, make_image, run_script):
  """The 'y' network, whose colour path has the bicubic chroma (a 1x1 image's mirrored border); a clip
  that is not one is skipped like an image."""
  folder, output_dir = tmp_path / 'hostile', tmp_path / 'out'
  folder.mkdir()
  expected = {name: (outcome, reason)
              for name, (outcome, _, reason) in hostile_folder(folder, make_image).items()}
  (folder / 'not_a_clip.mp4').write_bytes(np.random.default_rng(1).bytes(5000))
  expected['not_a_clip.mp4'] = ('skipped', 'not a video')
  result = run_script('generate.py', '--random_weights', '--scale=3', '--channels=y', f'--input={folder}',
                      f'--output_dir={output_dir}')
  assert result.returncode == 1, result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  assert all(line.startswith('skipped: ') for line in result.stderr.splitlines()), result.stderr
  for name, (outcome, reason) in expected.items():
    path, upscaled = folder / name, output_dir / f'{files.output_stem(name)}_x{SCALE}.png'
    named = lines_naming(path, result.stdout, result.stderr)
    if outcome == 'written':
      assert named == [f'{path} -> {upscaled}'], (name, named)
      with Image.open(upscaled) as output:
        output.load()
        size = (1, 1) if name == 'one_pixel.png' else (WIDTH, HEIGHT)
        assert output.size == (SCALE * size[0], SCALE * size[1]), name
    else:
      assert len(named) == 1 and named[0].startswith(f'skipped: {path}: ') and reason in named[0], (name, named)
      assert not upscaled.exists()
  written = sum(outcome == 'written' for outcome, _ in expected.values())
  assert result.stdout.splitlines()[-1] == f'{written} written, {len(expected) - written} failed', result.stdout
  assert sorted(os.listdir(output_dir)) == sorted(f'{files.output_stem(name)}_x{SCALE}.png'
                                                  for name, (outcome, _) in expected.items()
                                                  if outcome == 'written')


@pytest.mark.parametrize('raised,reason', [
    (PermissionError(13, 'Permission denied'), 'cannot be read (Permission denied)'),
    (IsADirectoryError(21, 'Is a directory'), 'cannot be read (Is a directory)'),
    (SyntaxError('broken PNG file'), 'not a readable image (SyntaxError: broken PNG file)'),
    (struct.error('unpack requires a buffer of 4 bytes'),
     'not a readable image (error: unpack requires a buffer of 4 bytes)'),
    (EOFError('no more images'), 'not a readable image (EOFError: no more images)')])
def test_what_opening_a_file_raises_becomes_its_one_reason(tmp_path, monkeypatch, raised, reason):
  """What a user without read permission gets, simulated (as root, the fuzz folder's file is readable), and
  the other kinds of exception that Pillow's decoders raise on corrupt files, as well as OSError."""
  photo = tmp_path / 'photo.png'
  Image.fromarray(smooth_rgb(8, 8)).save(photo)

  def refuse(*args, **kwargs):
    raise raised
  monkeypatch.setattr(Image, 'open', refuse)
  with pytest.raises(files.InputError) as refused:
    image_files.load_image(str(photo))
  assert str(refused.value) == f'{photo}: {reason}'


def test_a_header_claiming_60000x60000_pixels_is_refused_from_the_header(tmp_path):
  """Pillow's decompression-bomb limit refuses it at Image.open, before any pixel is allocated."""
  bomb = tmp_path / 'bomb.png'
  bomb.write_bytes(bomb_png())
  with pytest.raises(files.InputError, match='too large to decode.*3600000000 pixels'):
    image_files.load_image(str(bomb))


def generate_in_process(capsys, main_in_process, *args):
  """generate.py's main() in this process with an untrained 'y' x3 model: (exit code, stdout, stderr)."""
  capsys.readouterr()  # (whatever earlier steps printed)
  try:
    main_in_process('generate', '--random_weights', '--scale=3', '--channels=y', *args)
    code = 0
  except SystemExit as stopped:
    code = stopped.code
  printed = capsys.readouterr()
  return code, printed.out, printed.err


def test_a_list_with_an_unreadable_image_writes_the_others_names_it_and_fails(
    tmp_path, make_image, main_in_process, capsys):
  make_image(WIDTH, HEIGHT).save(tmp_path / 'first.png')
  (tmp_path / 'broken.jpg').write_bytes(b'')
  make_image(WIDTH, HEIGHT, seed=3).save(tmp_path / 'last.png')
  output_dir = tmp_path / 'out'
  inputs = ','.join(str(tmp_path / name) for name in ('first.png', 'broken.jpg', 'last.png'))
  code, out, err = generate_in_process(capsys, main_in_process, f'--input={inputs}', f'--output_dir={output_dir}')
  assert code == 1
  assert err.splitlines() == [f'skipped: {tmp_path / "broken.jpg"}: not a readable image '
                              f"(cannot identify image file '{tmp_path / 'broken.jpg'}')"]
  assert out.splitlines()[-1] == '2 written, 1 failed'
  assert sorted(os.listdir(output_dir)) == ['first_x3.png', 'last_x3.png']


def test_one_unreadable_input_is_still_one_error_line(
    tmp_path, main_in_process, capsys, assert_input_error):
  """Named alone, or alone in its folder: nothing to count, the error is the run's one line."""
  folder = tmp_path / 'photos'
  folder.mkdir()
  (folder / 'broken.png').write_bytes(b'')
  for spec in (folder / 'broken.png', folder):
    code, out, err = generate_in_process(capsys, main_in_process, f'--input={spec}',
                                         f'--output_dir={tmp_path / "out"}')
    result = types.SimpleNamespace(returncode=code, stdout=out, stderr=err)
    assert_input_error(result, folder / 'broken.png')
    assert 'written' not in out
