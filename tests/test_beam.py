"""tools/beam_upscale.py: the Beam pipeline writes generate.py's bytes, lists the files it cannot decode in
failures.jsonl and writes the rest, and refuses bad input with one line.

The pipelines run in this process on the DirectRunner (no worker start-up), with tiny checkpoints; one
run in two worker processes (multi_processing) checks what only separate processes test: the pipeline's
functions reach the workers and each loads its model. Skipped where apache_beam is not installed
(requirements-beam.txt).
"""
import io
import json
import types

import numpy as np
import pytest
from PIL import Image
from PIL import ImageCms

pytest.importorskip('apache_beam', reason='apache-beam is not installed (pip install -r requirements-beam.txt)')
from apache_beam.io.filesystems import FileSystems  # noqa: E402  (after the skip)
from apache_beam.io.localfilesystem import LocalFileSystem  # noqa: E402

from conftest import smooth_rgb  # noqa: E402
from superres import image_files  # noqa: E402
from tools import beam_upscale  # noqa: E402

SCALE = 3
TILE = 16  # LR pixels: the images below go in tiles, as a large photo would


def srgb_profile():
  return ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()


@pytest.fixture(scope='module')
def photos(tmp_path_factory, make_image):
  """A folder of small images of every kind generate.py handles differently: RGB, gray, alpha, palette,
  and a JPEG with an ICC profile (which goes into the PNG); odd sizes, larger than one TILE."""
  folder = tmp_path_factory.mktemp('photos')
  for index, mode in enumerate(['RGB', 'L', 'RGBA', 'P']):
    make_image(37 + index, 23 + 2 * index, mode=mode, seed=index).save(folder / f'{mode.lower()}.png')
  Image.fromarray(smooth_rgb(29, 41, seed=7)).save(folder / 'profiled.jpg', quality=90,
                                                   icc_profile=srgb_profile())
  return folder


def run_in_process(main_in_process, capsys, *args):
  """tools.beam_upscale's main() in this process; returns its exit code and what it printed."""
  capsys.readouterr()
  try:
    main_in_process('tools.beam_upscale', *args)
    code = 0
  except SystemExit as stopped:
    code = stopped.code
  printed = capsys.readouterr()
  return types.SimpleNamespace(returncode=code, stdout=printed.out, stderr=printed.err)


def pngs(folder):
  return {path.name: path.read_bytes() for path in sorted(folder.glob('*.png'))}


@pytest.mark.parametrize('channels', ['rgb', 'y'])
def test_the_pipeline_writes_the_bytes_of_generate_and_loads_the_model_once(
    tmp_path, photos, tiny_checkpoint, main_in_process, capsys, monkeypatch, channels):
  checkpoint_dir = tiny_checkpoint(SCALE, channels)
  model_flags = [f'--scale={SCALE}', f'--channels={channels}', f'--checkpoint_dir={checkpoint_dir}',
                 f'--tile={TILE}']
  main_in_process('generate', f'--input={photos}', f'--output_dir={tmp_path / "generate"}', *model_flags)
  loads = []
  load_model = beam_upscale.UpscalerHandler.load_model
  monkeypatch.setattr(beam_upscale.UpscalerHandler, 'load_model',
                      lambda handler: loads.append(1) or load_model(handler))
  result = run_in_process(main_in_process, capsys, f'--input={photos}', f'--output={tmp_path / "beam"}',
                          *model_flags)
  assert result.returncode == 0, result.stderr
  assert '5 written, 0 failed' in result.stdout
  expected = pngs(tmp_path / 'generate')
  assert len(expected) == 5
  assert pngs(tmp_path / 'beam') == expected
  assert (tmp_path / 'beam' / 'failures.jsonl').read_text() == ''
  assert len(loads) == 1


def write_truncated_png(path, seed):
  """A PNG cut in the middle of its pixel data: the header opens, the pixels do not decode."""
  buffer = io.BytesIO()
  Image.fromarray(smooth_rgb(20, 30, seed=seed)).save(buffer, format='PNG')
  path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])


def test_undecodable_files_and_clashing_names_go_to_failures_jsonl_and_the_rest_is_written(
    tmp_path, tiny_checkpoint, main_in_process, capsys):
  folder = tmp_path / 'photos'
  (folder / 'sub').mkdir(parents=True)
  for index in range(2):
    Image.fromarray(smooth_rgb(12, 15, seed=index)).save(folder / f'good{index}.png')
  for path in [folder / 'twin.png', folder / 'sub' / 'twin.jpg']:  # both would write twin_x3.png
    Image.fromarray(smooth_rgb(12, 15, seed=5)).save(path)
  write_truncated_png(folder / 'truncated.png', seed=3)
  (folder / 'noise.jpg').write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
  (folder / 'empty.bmp').write_bytes(b'')
  (folder / 'notes.txt').write_text('not an image, and not named as one: not an input')
  output = tmp_path / 'out'
  result = run_in_process(main_in_process, capsys, f'--input={folder}/**', f'--output={output}',
                          f'--scale={SCALE}', '--channels=y', f'--checkpoint_dir={tiny_checkpoint(SCALE, "y")}')
  assert result.returncode == 1
  assert '2 written, 5 failed' in result.stdout
  assert sorted(pngs(output)) == ['good0_x3.png', 'good1_x3.png']
  records = [json.loads(line) for line in (output / 'failures.jsonl').read_text().splitlines()]
  assert [record['file'] for record in records] == [
      str(folder / name) for name in ['empty.bmp', 'noise.jpg', 'sub/twin.jpg', 'truncated.png', 'twin.png']]
  twins = records[2], records[4]
  assert twins[0]['error'].endswith(f'would also be that of {folder / "twin.png"}; rename one of them')
  assert twins[1]['error'].endswith(f'would also be that of {folder / "sub" / "twin.jpg"}; rename one of them')
  records = [record for record in records if record not in twins]
  for record in records:  # the reasons generate.py gives when it skips these files
    with pytest.raises(beam_upscale.files.InputError) as error:
      image_files.load_image(record['file'])
    assert record['error'] == str(error.value).removeprefix(record['file'] + ': ')
  assert not [path for path in output.iterdir() if path.name.endswith('.tmp')]  # nothing half-written


class SchemeFileSystem(LocalFileSystem):
  """The local disk under a scheme of its own, 'scheme-test://PATH': a stand-in for gs:// or s3:// in
  fetching a model through Beam's filesystems. Beam finds every FileSystem subclass by its scheme."""

  PREFIX = 'scheme-test://'

  @classmethod
  def scheme(cls):
    return 'scheme-test'

  def join(self, base_path, *paths):
    return '/'.join([base_path.rstrip('/'), *paths])

  def match(self, patterns, limits=None):
    results = super().match([pattern.removeprefix(self.PREFIX) for pattern in patterns], limits)
    for result in results:
      for metadata in result.metadata_list:
        metadata.path = self.PREFIX + metadata.path
    return results

  def open(self, path, *args, **kwargs):  # pylint: disable=arguments-differ
    return super().open(path.removeprefix(self.PREFIX), *args, **kwargs)


def test_a_model_on_another_filesystem_is_checked_and_fetched_through_beams_filesystems(
    tmp_path, tiny_checkpoint, main_in_process, capsys):
  checkpoint_dir = tiny_checkpoint(SCALE, 'y')
  assert type(FileSystems.get_filesystem(SchemeFileSystem.PREFIX + checkpoint_dir)) is SchemeFileSystem
  folder = tmp_path / 'photos'
  folder.mkdir()
  Image.fromarray(smooth_rgb(12, 15, seed=0)).save(folder / 'photo.png')
  common = [f'--input={folder}', '--channels=y']
  local = run_in_process(main_in_process, capsys, *common, f'--output={tmp_path / "local"}', f'--scale={SCALE}',
                         f'--checkpoint_dir={checkpoint_dir}')
  fetched = run_in_process(main_in_process, capsys, *common, f'--output={tmp_path / "fetched"}',
                           f'--scale={SCALE}', f'--checkpoint_dir={SchemeFileSystem.PREFIX}{checkpoint_dir}')
  assert (local.returncode, fetched.returncode) == (0, 0), fetched.stderr
  assert pngs(tmp_path / 'fetched') == pngs(tmp_path / 'local')
  wrong_scale = run_in_process(main_in_process, capsys, *common, f'--output={tmp_path / "x2"}', '--scale=2',
                               f'--checkpoint_dir={SchemeFileSystem.PREFIX}{checkpoint_dir}')
  assert wrong_scale.returncode == 1
  assert wrong_scale.stderr.strip().endswith(
      f'checkpoint is for --scale={SCALE} --channels=y, not --scale=2 --channels=y')


def test_two_worker_processes_write_the_bytes_of_one(tmp_path, photos, tiny_checkpoint, main_in_process,
                                                     run_script, capsys):
  """multi_processing: the pipeline's functions are pickled from __main__ into two worker processes, which
  each load the model; the PNGs are those of the in-process run."""
  model_flags = [f'--scale={SCALE}', '--channels=rgb', f'--checkpoint_dir={tiny_checkpoint(SCALE, "rgb")}']
  in_process = run_in_process(main_in_process, capsys, f'--input={photos}', f'--output={tmp_path / "one"}',
                              *model_flags)
  assert in_process.returncode == 0, in_process.stderr
  result = run_script('tools.beam_upscale', f'--input={photos}', f'--output={tmp_path / "two"}', *model_flags,
                      '--direct_running_mode=multi_processing', '--direct_num_workers=2')
  assert result.returncode == 0, result.stderr
  assert '5 written, 0 failed' in result.stdout
  assert 'model loads: 2 ' in result.stdout  # Beam's own count: two processes, each loading once
  assert pngs(tmp_path / 'two') == pngs(tmp_path / 'one')


@pytest.mark.parametrize('arguments,culprit', [(['--input={tmp}/*.png'], '{tmp}/*.png'),
                                               (['--input={photos}', '--scale=1'], '--scale')],
                         ids=['no_match', 'bad_scale'])
def test_a_pattern_that_matches_nothing_or_a_bad_flag_is_one_error_line(
    tmp_path, photos, run_script, assert_input_error, arguments, culprit):
  """As a command: Beam's import and absl's flag parsing add nothing on stderr."""
  paths = {'tmp': tmp_path, 'photos': photos}
  result = run_script('tools.beam_upscale', *[argument.format(**paths) for argument in arguments],
                      f'--output={tmp_path / "out"}')
  assert_input_error(result, culprit.format(**paths))
  assert not (tmp_path / 'out').exists()


def test_an_unwritable_output_is_one_error_line(tmp_path, photos, main_in_process, capsys, assert_input_error):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  result = run_in_process(main_in_process, capsys, f'--input={photos}', f'--output={blocker / "out"}')
  assert_input_error(result, blocker / 'out')
