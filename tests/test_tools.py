"""The README's helpers: the results table is what generate.py --eval_dir reports for each shipped model, the
comparison figure shows the four versions of one evaluated image, and the streaming benchmark compares the
two patch readers."""
import json
import time

import numpy as np
import pytest
from PIL import Image

from superres import patches
from conftest import smooth_rgb


@pytest.fixture(scope='module')
def eval_sets(tmp_path_factory):
  """Tiny stand-ins for ../shared/data/Set5 and Set14 (the tests never read the shared data)."""
  data_dir = tmp_path_factory.mktemp('data')
  for name, count in (('Set5', 2), ('Set14', 1)):
    (data_dir / name).mkdir()
    for index in range(count):
      Image.fromarray(smooth_rgb(60, 72, seed=20 + index)).save(data_dir / name / f'image{index}.png')
  return data_dir


def test_results_table_holds_the_scores_of_generate_eval_dir_for_each_shipped_model(
    tmp_path, eval_sets, run_script):
  tables_json = tmp_path / 'tables.json'
  table = run_script('tools.results_table', f'--data_dir={eval_sets}',
                     f'--output_dir={tmp_path / "images"}',
                     f'--json={tables_json}')
  assert table.returncode == 0, table.stderr
  scores = json.loads(tables_json.read_text())
  evaluated = run_script('generate.py', f'--eval_dir={eval_sets / "Set14"}', '--scale=3', '--channels=y',
                         f'--output_dir={tmp_path / "generate"}', f'--json={tmp_path / "set14.json"}')
  assert evaluated.returncode == 0, evaluated.stderr
  assert scores['y_x3']['Set14'] == json.loads((tmp_path / 'set14.json').read_text())['mean']
  rows = [line for line in table.stdout.splitlines() if line.startswith('| ')][1:]
  x3_rows = [row for row in rows if '| x3 |' in row]
  assert x3_rows[0].startswith('| bicubic | x3 |') and len(x3_rows) == 1 + sum('_x3' in key for key in scores)
  set14 = scores['y_x3']['Set14']
  y_x3_row = next(row for row in rows if 'espcn_y_x3' in row)
  assert f'**{set14["psnr_y"]:.2f}** / {set14["ssim_y"]:.4f} |' in y_x3_row


def test_figure_shows_lr_bicubic_espcn_and_hr_crops_side_by_side(tmp_path, eval_sets, run_script,
                                                                  main_in_process, monkeypatch):
  """Without --output, the figure goes to result/, not over a figure of docs/."""
  result_dir = tmp_path / 'evaluated'
  assert run_script('generate.py', f'--eval_dir={eval_sets / "Set5"}', '--scale=3', '--channels=y',
                    f'--output_dir={result_dir}').returncode == 0
  monkeypatch.chdir(tmp_path)
  main_in_process('tools.make_figure', f'--result_dir={result_dir}', '--name=image0', '--crop=6,6,30,24',
                  '--zoom=2')
  with Image.open(tmp_path / 'result' / 'comparison.png') as figure:
    assert figure.size == (4 * 30 * 2 + 3 * 4, 24 * 2 + 20)  # four panels with gaps, and a label strip
    hr_crop = Image.open(result_dir / 'image0_hr.png').crop((6, 6, 36, 30)).resize((60, 48), Image.NEAREST)
    hr_panel = figure.crop((3 * (60 + 4), 0, 3 * (60 + 4) + 60, 48))
    np.testing.assert_array_equal(np.asarray(hr_panel.convert('RGB')), np.asarray(hr_crop.convert('RGB')))


def test_draw_ps_writes_under_result_unless_told(tmp_path, main_in_process, monkeypatch):
  """The README's docs/ps.png is redrawn only when --output names it."""
  monkeypatch.chdir(tmp_path)
  main_in_process('tools.draw_ps')
  assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob('*')) == ['result', 'result/ps.png']


def test_streaming_benchmark_reports_each_readers_speed_under_its_own_name(
    tmp_path, training_images, main_in_process, monkeypatch):
  """Reading a streamed batch is made to take 20 ms more: so the streamed figure is at most 16 patches per
  20 ms, below the in-memory one, and their ratio, streamed to in memory, is below 1."""
  patch_file = tmp_path / 'patches.h5'
  patches.prepare(str(training_images), str(patch_file), 2, 'y', 4, 2)  # 701 patches, 56,080 bytes
  real_read = patches.StreamedPatches.read

  def slow_read(reader, indices):
    time.sleep(0.02)
    return real_read(reader, indices)

  monkeypatch.setattr(patches.StreamedPatches, 'read', slow_read)
  report_path = tmp_path / 'report.json'
  main_in_process('tools.benchmark_streaming', f'--data={patch_file}', '--max_memory=0.02', '--steps=5',
                  '--rounds=2', '--batch_size=16', f'--json={report_path}')
  report = json.loads(report_path.read_text())
  assert {key: report[key] for key in ('data', 'max_memory_mib', 'batch_size', 'steps_per_round', 'rounds')} == {
      'data': str(patch_file), 'max_memory_mib': 0.02, 'batch_size': 16, 'steps_per_round': 5, 'rounds': 2}
  assert report['file_mib'] == pytest.approx(patch_file.stat().st_size / 2**20)
  assert 0 < report['streamed_patches_per_s'] <= 16 / 0.02
  assert report['in_memory_patches_per_s'] > report['streamed_patches_per_s']
  assert 0 < report['streamed_to_in_memory'] < 1
  assert report['streamed_to_in_memory'] == pytest.approx(
      report['streamed_patches_per_s'] / report['in_memory_patches_per_s'])


def test_streaming_benchmark_refuses_a_budget_that_holds_the_file(tmp_path, training_images, main_in_process,
                                                                  capsys):
  patch_file = tmp_path / 'patches.h5'
  patches.prepare(str(training_images), str(patch_file), 2, 'y', 4, 2)
  capsys.readouterr()  # (the preparation's progress bar)
  with pytest.raises(SystemExit):
    main_in_process('tools.benchmark_streaming', f'--data={patch_file}', '--max_memory=100')
  error_lines = capsys.readouterr().err.strip().splitlines()
  assert len(error_lines) == 1 and error_lines[0].startswith(f'error: {patch_file}: fits in --max_memory=100')
