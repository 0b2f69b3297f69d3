"""A wrong flag or a missing input is reported before TensorFlow loads (issue 29, item 7): generate.py and
train.py parse and check their flags first and load the modules that import TensorFlow on first use
(files.import_on_first_use); prepare_data.py never imports it.

Each script runs as `python script.py ...` does, through a wrapper that says at exit whether TensorFlow was
imported; the runs go in parallel (each is an interpreter start-up, under a second of CPU).
"""
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import REPO_ROOT
import espcn
from superres import choices

# At exit (an absl flag error and files.exit_on_input_error both end in SystemExit), whether TensorFlow loaded.
WRAPPER = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
  runpy.run_path(sys.argv[0], run_name='__main__')
finally:
  print('tensorflow ' + ('imported' if 'tensorflow' in sys.modules else 'not imported'))
"""


def run_all(commands):
  """{case: CompletedProcess-like (returncode, stdout, stderr)} of the wrapped scripts, run in parallel."""
  processes = {case: subprocess.Popen([sys.executable, '-c', WRAPPER, *map(str, arguments)], cwd=REPO_ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for case, arguments in commands.items()}
  results = {}
  for case, process in processes.items():
    stdout, stderr = process.communicate(timeout=300)
    results[case] = (process.returncode, stdout, stderr)
  return results


def test_bad_flags_and_inputs_are_reported_before_tensorflow_loads(tmp_path):
  """(what is wrong, the words of its message)"""
  missing = tmp_path / 'missing.png'
  images = tmp_path / 'images'
  images.mkdir()
  Image.fromarray(np.full((30, 30, 3), 90, np.uint8)).save(images / 'a.png')
  bad = {
      ('generate.py', '--scale=1'): '--scale=1: 1 is not integer >= 2',
      ('generate.py', '--channels=xyz'): '--channels=xyz: value should be one of <rgb|y>',
      ('generate.py', '--crf=99'): '--crf=99: 99 is not an integer in the range [0, 51]',
      ('generate.py', '--no_such_flag'): 'Unknown command line flag',
      ('generate.py', f'--input={missing}'): f'error: {missing}: no such file or folder',
      ('generate.py', '--benchmark', '--size=100x7'): 'error: --size=100x7: width and height must be positive',
      ('generate.py', f'--export_dir={tmp_path / "export"}', '--channels=rgb', '--export_formats=dnn_superres'):
          "error: --export_formats=dnn_superres: OpenCV's dnn_superres runs its espcn on Y alone",
      ('prepare_data.py', '--scale=1'): '--scale=1: 1 is not integer >= 2',
      ('prepare_data.py', f'--images_dir={missing}'): f'error: {missing}: no such file or folder',
      ('train.py', '--scale=1'): '--scale=1: 1 is not integer >= 2',
      ('train.py', '--channels=xyz'): '--channels=xyz: value should be one of <rgb|y>',
      ('train.py', '--output_activation=relu'): '--output_activation=relu: value should be one of <tanh|none>',
      ('train.py', f'--data={tmp_path / "none.h5"}', f'--images_dir={missing}'):
          f'error: {missing}: no such file or folder',
  }
  # Past the quick checks TensorFlow loads, quietly: runtime.py's start-up before espcn's own import (config).
  shipped = REPO_ROOT / 'checkpoint' / 'espcn_y_x3'
  loads = ('train.py', f'--data={tmp_path / "none.h5"}', f'--images_dir={images}', f'--checkpoint_dir={shipped}',
           '--scale=3', '--channels=y')
  results = run_all({**{case: case for case in bad}, loads: loads,
                     'prepare_data.py runs': ['prepare_data.py', f'--images_dir={images}', '--scale=3',
                                              f'--output={tmp_path / "patches.h5"}', '--patch_size=5']})
  for case, message in bad.items():
    code, stdout, stderr = results[case]
    assert code != 0 and 'Traceback' not in stderr and message in stderr, (case, stderr)
    assert len(stderr.splitlines()) == (1 if message.startswith('error: ') else 2), (case, stderr)  # + absl's hint
    assert stdout.splitlines()[-1] == 'tensorflow not imported', (case, stdout)
  code, stdout, stderr = results[loads]
  assert code == 1 and stderr.splitlines() == [f'error: {shipped}: holds a shipped model, which training never '
                                               'overwrites; pass another --checkpoint_dir'], stderr
  assert stdout.splitlines()[-1] == 'tensorflow imported', stdout
  code, stdout, stderr = results['prepare_data.py runs']
  assert code == 0, stderr
  assert stdout.splitlines()[-1] == 'tensorflow not imported', stdout


def test_output_activations_without_tensorflow_are_espcns():
  """train.py's --output_activation takes its values from choices.py, which cannot import espcn."""
  assert choices.OUTPUT_ACTIVATIONS == espcn.OUTPUT_ACTIVATIONS
