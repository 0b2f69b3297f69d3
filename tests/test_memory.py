"""prepare_data.py holds one image at a time: its peak memory does not grow with the number of images."""
import subprocess
import sys

from PIL import Image

from conftest import REPO_ROOT, smooth_rgb

PEAK_RSS_OF_PREPARE = """
import resource, sys
sys.argv = ['prepare_data.py'] + sys.argv[1:]
sys.path.insert(0, {repo!r})
import prepare_data
from absl import app
prepare_data.define_flags()
try:
  app.run(prepare_data.main)
except SystemExit:
  pass
print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mib(images_dir, output):
  """Peak resident memory of one prepare_data.py run (x3, y, stride 2: about 3 MB of patches per 240x240 image)."""
  result = subprocess.run([sys.executable, '-c', PEAK_RSS_OF_PREPARE.format(repo=str(REPO_ROOT)),
                           f'--images_dir={images_dir}', f'--output={output}', '--scale=3', '--channels=y',
                           '--stride=2'], capture_output=True, text=True, check=True)
  return int(result.stdout.split('peak_rss_kib')[-1]) / 1024


def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
  folders = {count: tmp_path / f'{count}_images' for count in (4, 40)}
  for count, folder in folders.items():
    folder.mkdir()
    for index in range(count):
      Image.fromarray(smooth_rgb(240, 240, seed=index)).save(folder / f'{index}.png')
  peaks = {count: peak_rss_mib(folder, tmp_path / f'{count}.h5') for count, folder in folders.items()}
  data_growth_mib = ((tmp_path / '40.h5').stat().st_size - (tmp_path / '4.h5').stat().st_size) / 2**20
  assert data_growth_mib > 80, 'ten times the images must make a much larger file'
  assert peaks[40] - peaks[4] < 25, (peaks, data_growth_mib)  # measured: under 5 MiB
