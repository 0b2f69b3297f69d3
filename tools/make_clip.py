"""Writes a test clip with a sound track: ffmpeg's moving test pattern and a 440 Hz tone, H.264 and AAC.

  python -m tools.make_clip --output=result/clip.mp4 --size=640x360 --seconds=2

The ffmpeg is the one inside the imageio-ffmpeg wheel, so nothing needs installing on the system.
"""
import os
import subprocess

import imageio_ffmpeg
from absl import app
from absl import flags

from superres import files

FLAGS = flags.FLAGS
CONTAINERS = {'.mp4': 'mp4', '.mkv': 'matroska', '.mov': 'mov'}  # extension -> ffmpeg's muxer


def define_flags():
  flags.DEFINE_string('output', 'result/clip.mp4', 'The clip to write (.mp4, .mkv or .mov).')
  flags.DEFINE_string('size', '640x360', 'WIDTHxHEIGHT of the frames.')
  flags.DEFINE_float('seconds', 2.0, 'Duration.', lower_bound=0.04)
  flags.DEFINE_string('rate', '25', 'Frames per second, e.g. 25 or 30000/1001.')


def make_clip(path, width, height, seconds, rate='25', audio=True):
  """A test-pattern clip (ffmpeg's testsrc2: moving colours and a frame counter), with a tone if `audio`,
  written under a temporary name and renamed when complete."""
  container = CONTAINERS.get(os.path.splitext(path)[1].lower())
  if container is None:
    raise files.InputError(f'{path}: give a {", ".join(CONTAINERS)} file name')
  command = [imageio_ffmpeg.get_ffmpeg_exe(), '-v', 'error', '-y', '-f', 'lavfi', '-i',
             f'testsrc2=size={width}x{height}:rate={rate}:duration={seconds}']
  if audio:
    command += ['-f', 'lavfi', '-i', f'sine=frequency=440:duration={seconds}', '-c:a', 'aac', '-shortest']
  with files.atomic_output(path) as temporary:
    result = subprocess.run(command + ['-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-f', container, temporary],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
      message = (result.stderr.strip().splitlines() or ['no message'])[-1]
      raise files.InputError(f'{path}: ffmpeg could not write the clip ({message})')
  return path


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  try:
    width, height = (int(part) for part in FLAGS.size.lower().split('x'))
  except ValueError:
    raise files.InputError(f'--size={FLAGS.size}: expected WIDTHxHEIGHT, e.g. 640x360') from None
  files.ensure_writable_parent(FLAGS.output)
  print(make_clip(FLAGS.output, width, height, FLAGS.seconds, FLAGS.rate))


if __name__ == '__main__':
  define_flags()
  app.run(main)
