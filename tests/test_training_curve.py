"""tools.training_curve: what minutes of training buy, read from a run's validation.jsonl."""
import json

import pytest
from PIL import Image

import espcn
from superres import evaluation
from tools import training_curve
from conftest import smooth_rgb

# (train_seconds, val_psnr) of a fake run: a dip after a warm restart at 10 minutes, the best at 20.
VALIDATIONS = [(120, 20.0), (540, 22.0), (660, 21.0), (1200, 23.5), (1500, 23.0)]


@pytest.fixture
def run_folder(tmp_path):
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  config = {'scale': 2, 'channels': 'y', 'output_activation': 'none', 'ps_order': espcn.PS_ORDER}
  (run_dir / 'config.json').write_text(json.dumps(config))
  (run_dir / 'validation.jsonl').write_text(''.join(
      json.dumps({'step': 1000 * (index + 1), 'val_psnr': psnr, 'train_seconds': seconds}) + '\n'
      for index, (seconds, psnr) in enumerate(VALIDATIONS)))
  val_dir = tmp_path / 'val'
  val_dir.mkdir()
  for index in range(2):
    Image.fromarray(smooth_rgb(40, 46, seed=30 + index)).save(val_dir / f'val{index}.png')
  return run_dir, val_dir


def test_the_table_gives_the_best_validation_within_each_budget_and_bicubic_of_the_evaluation(
    tmp_path, run_folder, run_script, upscaler):
  """(Drawn as SVG: matplotlib writes the format that --output ends with.)"""
  run_dir, val_dir = run_folder
  output = tmp_path / 'curve.svg'
  result = run_script('tools.training_curve', f'--runs=fake={run_dir}', f'--val_dir={val_dir}',
                      '--minutes=1,5,10,15,30', f'--output={output}')
  assert result.returncode == 0, result.stderr
  rows = {line.split('|')[1].strip(): [cell.strip() for cell in line.split('|')[2:-1]]
          for line in result.stdout.splitlines() if line.startswith('| ') and '---' not in line}
  assert rows['fake'] == ['-', '20.00', '22.00', '22.00', '23.50']  # best so far, not the last score
  bicubic = evaluation.evaluate(upscaler(2, 'y'), str(val_dir), str(tmp_path))['mean']['bicubic_psnr_y']
  assert rows['bicubic x2'] == [f'{bicubic:.2f}'] * 5
  assert output.read_text().startswith('<?xml') and '<svg' in output.read_text()


def test_steps_give_the_best_validation_within_each_step_budget(tmp_path, run_folder, main_in_process, capsys,
                                                               monkeypatch):
  """Schedules compared step for step: steps 1000 to 5000 scored 20, 22, 21, 23.5, 23. Without --output,
  the curve goes to result/, not over the README's docs/training_curve.png."""
  run_dir, val_dir = run_folder
  monkeypatch.chdir(tmp_path)
  main_in_process('tools.training_curve', f'--runs=fake={run_dir}', f'--val_dir={val_dir}', '--steps=500,3000,4500')
  with Image.open(tmp_path / 'result' / 'training_curve.png') as figure:
    assert figure.size == (1600, 900)  # 8 x 4.5 inches at 200 dpi
  steps_table = capsys.readouterr().out.split('\n\n')[1]
  assert '| 500 steps | 3,000 steps | 4,500 steps |' in steps_table
  assert '| fake | - | 22.000 | 23.500 |' in steps_table


@pytest.mark.parametrize('runs', ['no_label_here', 'label='])
def test_a_bad_runs_flag_is_one_error_line(tmp_path, run_script, assert_input_error, runs):
  result = run_script('tools.training_curve', f'--runs={runs}', f'--output={tmp_path / "curve.png"}')
  assert_input_error(result, '--runs')
  assert not (tmp_path / 'curve.png').exists()


def test_the_curve_draws_each_validation_and_the_best_so_far_of_each_run_in_minutes():
  """Per run a thin line through every validation and a thick one through the best so far, against
  minutes; bicubic's PSNR dashed; the legend names them all and sits inside the frame."""
  steps = [(1000 * (index + 1), psnr) for index, (_, psnr) in enumerate(VALIDATIONS)]
  minutes = [(seconds / 60, psnr) for seconds, psnr in VALIDATIONS]
  figure = training_curve.draw([('fake', 2, minutes, steps), ('other', 2, minutes[:2], steps[:2])], {2: 21.5})
  axes, = figure.axes
  lines = {line.get_label(): line for line in axes.get_lines()}
  assert sorted(lines) == ['_fake: each validation', '_other: each validation', 'bicubic x2', 'fake', 'other']
  assert lines['_fake: each validation'].get_xydata().tolist() == [[2, 20], [9, 22], [11, 21], [20, 23.5],
                                                                  [25, 23]]
  assert lines['fake'].get_xydata().tolist() == [[2, 20], [9, 22], [11, 22], [20, 23.5], [25, 23.5]]
  assert lines['other'].get_xydata().tolist() == [[2, 20], [9, 22]]
  assert lines['fake'].get_linewidth() > lines['_fake: each validation'].get_linewidth()
  assert list(lines['bicubic x2'].get_ydata()) == [21.5, 21.5] and lines['bicubic x2'].get_linestyle() == '--'
  assert axes.get_xlim() == (0, 25)
  legend = axes.get_legend()
  assert [text.get_text() for text in legend.get_texts()] == ['bicubic x2', 'fake', 'other']
  renderer = figure.canvas.get_renderer()
  figure.draw(renderer)
  assert axes.get_window_extent(renderer).contains(*legend.get_window_extent(renderer).min)
  assert axes.get_window_extent(renderer).contains(*legend.get_window_extent(renderer).max)


def test_an_output_matplotlib_cannot_write_is_one_error_line(tmp_path, run_folder, main_in_process, capsys):
  run_dir, _ = run_folder
  with pytest.raises(SystemExit):
    main_in_process('tools.training_curve', f'--runs=fake={run_dir}', f'--output={tmp_path / "curve.txt"}')
  assert capsys.readouterr().err.strip() == f'error: {tmp_path / "curve.txt"}: expected a .png, .svg or .pdf file name'
