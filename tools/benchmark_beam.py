"""The Beam pipeline's images per second against generate.py's on the same folder and the same cores.

Runs, back to back in each of --rounds rounds (so that a busy spell of a shared machine slows both alike; which
goes first alternates), the two commands a user would run on a folder of photos, each a process of its own
timed from start to exit:

  python generate.py --input=FOLDER --output_dir=... --scale=S --channels=C
  python -m tools.beam_upscale --input=FOLDER --output=... --scale=S --channels=C \\
      --direct_running_mode=multi_processing --direct_num_workers=2

and reports the median images per second of each, their ratio, the median of each round's ratio, and
whether every PNG of the pipeline has the bytes of generate.py's. Without --photos it makes --count
synthetic photos of mixed sizes (skimage's sample photos resized to common camera and screen sizes, JPEG)
in a temporary folder:

  python -m tools.benchmark_beam --scale=3 --channels=rgb --json=result/beam_bench.json

With --memory it measures instead the peak memory (RSS) of one worker upscaling one photo of --size
(4000x3000), in tiles of the default side and of half of it, and of generate.py on the same photo.
"""
import filecmp
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from tqdm import tqdm

from superres import benchmark
from superres import files
from superres import model_flags

FLAGS = flags.FLAGS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field', 'immunohistochemistry')
PHOTO_SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 960), (1600, 1200), (480, 640),
               (768, 1024), (1200, 800), (960, 540))  # width x height: cameras and screens, both ways up
HALF_TILE = 256  # --memory: tiles of half the default side (inference.DEFAULT_TILE), a quarter of the pixels


def define_flags():
  model_flags.define_model_flags()
  flags.DEFINE_string('photos', '', 'Folder of photos to upscale. Default: --count synthetic photos of mixed '
                      'sizes, made in a temporary folder.')
  flags.DEFINE_integer('count', 40, 'Synthetic photos to make (without --photos).', lower_bound=1)
  flags.DEFINE_integer('rounds', 5, 'Rounds of both commands, back to back; which goes first alternates.',
                       lower_bound=1)
  flags.DEFINE_integer('workers', 2, "The pipeline's --direct_num_workers (multi_processing).", lower_bound=1)
  flags.DEFINE_bool('memory', False, 'Measure memory instead, on one photo of --size.')
  flags.DEFINE_string('size', '4000x3000', 'With --memory: the photo\'s size, WIDTHxHEIGHT (4000x3000: a '
                      '12-megapixel camera).')
  flags.DEFINE_string('json', '', 'Also write the report to this JSON file.')


def make_photos(folder, count, seed=0):
  """`count` JPEG photos, each one of skimage's sample photos resized (bicubic) to one of PHOTO_SIZES, the
  sizes in a random order (seeded): as a camera's folder mixes them, not in a cycle that would hand the
  larger ones to one worker."""
  from skimage import data  # pylint: disable=import-outside-toplevel
  sources = [Image.fromarray(getattr(data, name)()).convert('RGB') for name in SAMPLE_PHOTOS]
  sizes = np.random.default_rng(seed).permutation(np.resize(np.arange(len(PHOTO_SIZES)), count))
  for index, size_index in enumerate(sizes):
    photo = sources[index % len(sources)].resize(PHOTO_SIZES[size_index], Image.Resampling.BICUBIC)
    photo.save(os.path.join(folder, f'photo{index:03d}.jpg'), quality=90)


def run(command):
  """Runs a command from the repository root; returns its wall-clock seconds and its stdout."""
  start = time.perf_counter()
  result = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - start
  if result.returncode != 0:
    raise files.InputError(f'{" ".join(command)} failed:\n{result.stderr[-2000:]}')
  return seconds, result.stdout


def generate_command(photos, output_dir):
  return ['generate.py', f'--input={photos}', f'--output_dir={output_dir}', f'--scale={FLAGS.scale}',
          f'--channels={FLAGS.channels}']


def beam_command(photos, output_dir, workers, *extra):
  return ['-m', 'tools.beam_upscale', f'--input={photos}', f'--output={output_dir}', f'--scale={FLAGS.scale}',
          f'--channels={FLAGS.channels}', '--direct_running_mode=multi_processing',
          f'--direct_num_workers={workers}', *extra]


def same_pngs(first_dir, second_dir):
  """Whether two folders hold the same PNGs, byte for byte."""
  names = sorted(name for name in os.listdir(first_dir) if name.endswith('.png'))
  if names != sorted(name for name in os.listdir(second_dir) if name.endswith('.png')):
    return False
  return all(filecmp.cmp(os.path.join(first_dir, name), os.path.join(second_dir, name), shallow=False)
             for name in names)


def speed_report(photos):
  """Rounds of generate.py and the pipeline in turn: images per second of each, their medians, the ratio."""
  count = len(files.list_images(photos))
  speeds = {'generate': [], 'beam': []}
  identical = True
  with tempfile.TemporaryDirectory() as work_dir:
    for round_index in tqdm(range(FLAGS.rounds), desc='rounds', leave=False):
      outputs = {name: os.path.join(work_dir, f'{name}{round_index}') for name in speeds}
      commands = {'generate': generate_command(photos, outputs['generate']),
                  'beam': beam_command(photos, outputs['beam'], FLAGS.workers)}
      for name in (speeds if round_index % 2 == 0 else reversed(speeds)):  # who goes first alternates
        seconds, _ = run(commands[name])
        speeds[name].append(count / seconds)
      identical = identical and same_pngs(outputs['generate'], outputs['beam'])
  medians = {name: float(np.median(values)) for name, values in speeds.items()}
  ratios = np.array(speeds['beam']) / np.array(speeds['generate'])  # each round's pair ran back to back
  return {'images': count, 'rounds': FLAGS.rounds, 'workers': FLAGS.workers, 'cores': os.cpu_count(),
          'generate_images_per_s': medians['generate'], 'beam_images_per_s': medians['beam'],
          'beam_to_generate': medians['beam'] / medians['generate'],
          'beam_to_generate_median_of_rounds': float(np.median(ratios)),
          'generate_rounds': ' '.join(f'{value:.3f}' for value in speeds['generate']),
          'beam_rounds': ' '.join(f'{value:.3f}' for value in speeds['beam']),
          'identical_pngs': identical}


def children_peak_rss_mib(command):
  """Runs a command in a process of its own that reports the peak RSS of its children: here, of the one
  command it runs, measured apart from this process's earlier children."""
  probe = ('import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); '
           'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)')
  _, stdout = run(['-c', probe, sys.executable, *command])
  return int(stdout.split()[-1])


def worker_peak_rss_mib(stdout):
  """The peak RSS of the pipeline's workers, from beam_upscale's line 'peak memory of a worker: N MiB'."""
  return int(re.search(r'peak memory of a worker: (\d+) MiB', stdout).group(1))


def memory_report(size):
  """Peak RSS of one worker (one worker process) on one photo of `size`, in tiles of the default size and
  of half that, and of generate.py (its whole process) on the same photo."""
  width, height = size
  with tempfile.TemporaryDirectory() as work_dir:
    photos = os.path.join(work_dir, 'photos')
    os.makedirs(photos)
    make_photos(photos, 1)
    photo = os.path.join(photos, 'photo000.jpg')
    Image.open(photo).resize((width, height), Image.Resampling.BICUBIC).save(photo, quality=90)
    output = os.path.join(work_dir, 'out')
    tiled = worker_peak_rss_mib(run(beam_command(photo, output, 1))[1])
    half_tiles = worker_peak_rss_mib(run(beam_command(photo, output, 1, f'--tile={HALF_TILE}'))[1])
    generate = children_peak_rss_mib(generate_command(photo, output))
  return {'photo': f'{width}x{height}', 'scale': FLAGS.scale, 'channels': FLAGS.channels,
          'beam_worker_peak_rss_mib': tiled, f'beam_worker_peak_rss_mib_tile_{HALF_TILE}': half_tiles,
          'generate_peak_rss_mib': generate}


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  files.ensure_writable_parent(FLAGS.json)
  if FLAGS.memory:
    report = memory_report(benchmark.parse_size(FLAGS.size, 1))
  elif FLAGS.photos:
    report = speed_report(FLAGS.photos)
  else:
    with tempfile.TemporaryDirectory() as photos:
      make_photos(photos, FLAGS.count)
      report = speed_report(photos)
  files.print_report(report, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
