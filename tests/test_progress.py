"""Progress bars on a terminal (issue 29, items 6 and 7): generate.py shows a clip's frames (done/total, rate,
time left) and a bar of its inputs; its lines and prepare_data.py's 'skipped:' lines print above the bars
(tqdm.write), never into them.

stderr is a terminal here (Terminal): the bars of generate.py and prepare_data.py are drawn only there
(tqdm's disable=None), so that a log or a pipe gets clean lines.
"""
import io
import re
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
from PIL import Image

FRAMES = 25


class Terminal(io.StringIO):
  """A stderr that says it is a terminal, and keeps what is written to it."""

  def isatty(self):
    return True


def run_on_terminal(monkeypatch, capsys, main_in_process, *args):
  """A script's main() in this process with stderr on a Terminal: (exit code, stdout, the terminal's text)."""
  terminal = Terminal()
  monkeypatch.setattr(sys, 'stderr', terminal)
  capsys.readouterr()
  try:
    main_in_process(*args)
    code = 0
  except SystemExit as stopped:
    code = stopped.code
  return code, capsys.readouterr().out, terminal.getvalue()


def lines_over_bars(text, prefix):
  """The terminal's lines that start with `prefix`, each as it shows once the bars are cleared around it
  (after its last carriage return); a line printed into a bar keeps the bar in front of it."""
  return [line.rsplit('\r', 1)[-1] for line in text.split('\n') if prefix in line]


def test_a_clip_shows_its_frames_rate_and_time_left(tmp_path, monkeypatch, capsys, main_in_process):
  clip = tmp_path / 'clip.mp4'
  subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-v', 'error', '-f', 'lavfi', '-i',
                  f'testsrc2=size=48x32:rate={FRAMES}:duration=1', '-pix_fmt', 'yuv420p', str(clip)], check=True)
  code, out, terminal = run_on_terminal(monkeypatch, capsys, main_in_process, 'generate', '--random_weights',
                                        '--scale=3', '--channels=y', f'--input={clip}', f'--output_dir={tmp_path}')
  assert code == 0, terminal
  # e.g. 'clip.mp4:  40%|####      | 10/25 [00:01<00:01, 9.87frame/s]': done/total [elapsed<left, rate]
  bars = re.findall(rf'clip\.mp4: +\d+%\|[^|]*\| (\d+)/{FRAMES} '
                    r'\[\d\d:\d\d<\d\d:\d\d, +[\d.]+(?:frame/s|s/frame)\]', terminal)
  assert bars and int(bars[-1]) > 0, terminal
  assert f'{clip} -> {tmp_path / "clip_x3.mp4"}: {FRAMES} frames' in out


def test_generate_prints_its_lines_above_the_bar_of_its_inputs(tmp_path, monkeypatch, capsys, main_in_process):
  folder = tmp_path / 'photos'
  folder.mkdir()
  for name in ('a.png', 'c.png'):
    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(folder / name)
  for name in ('b.png', 'd.jpg'):
    (folder / name).write_bytes(b'not an image')
  code, out, terminal = run_on_terminal(monkeypatch, capsys, main_in_process, 'generate', '--random_weights',
                                        '--scale=3', '--channels=y', f'--input={folder}',
                                        f'--output_dir={tmp_path / "out"}')
  assert code == 1
  assert re.search(r'inputs: +\d+%\|[^|]*\| \d/4 ', terminal), terminal
  skipped = lines_over_bars(terminal, 'skipped: ')
  assert all(line.startswith('skipped: ') for line in skipped), skipped
  assert [line.split(': ')[1] for line in skipped] == [str(folder / 'b.png'), str(folder / 'd.jpg')], skipped
  assert out.splitlines()[-1] == '2 written, 2 failed'


def test_prepare_data_prints_its_skipped_lines_above_its_bar(tmp_path, monkeypatch, capsys, main_in_process):
  folder = tmp_path / 'images'
  folder.mkdir()
  Image.fromarray(np.full((30, 30, 3), 90, np.uint8)).save(folder / 'a.png')
  Image.fromarray(np.full((2000, 1, 3), 90, np.uint8)).save(folder / 'b_strip.png')
  (folder / 'c.png').write_bytes(b'not an image')
  code, out, terminal = run_on_terminal(monkeypatch, capsys, main_in_process, 'prepare_data',
                                        f'--images_dir={folder}', f'--output={tmp_path / "patches.h5"}',
                                        '--scale=3', '--patch_size=5', '--stride=4')
  assert code == 0, terminal
  assert re.search(r'images: +\d+%\|[^|]*\| \d/3 ', terminal), terminal
  skipped = lines_over_bars(terminal, 'skipped: ')
  assert len(skipped) == 2 and all(line.startswith('skipped: ') for line in skipped), skipped
  assert '1 image used, 2 skipped (1 too small, 1 unreadable)' in out


def test_prepare_data_draws_no_bar_into_a_log(tmp_path, capsys, main_in_process):
  folder = tmp_path / 'images'
  folder.mkdir()
  Image.fromarray(np.full((30, 30, 3), 90, np.uint8)).save(folder / 'a.png')
  main_in_process('prepare_data', f'--images_dir={folder}', f'--output={tmp_path / "patches.h5"}', '--scale=3',
                  '--patch_size=5', '--stride=4')
  assert capsys.readouterr().err == ''  # stderr is not a terminal here
