"""tools.video_table: the y x3 models on a clip's LR frames, clean and H.264 at each --crf, scored against HR."""
import contextlib
import io
import json
import math
import types

import numpy as np
import pytest

from superres import colour
from tools import video_table

SIZE = '98x74'  # cut down to 96x72 HR: 32x24 LR
FRAMES = 4
CRFS = ('crf 0', 'crf 18', 'crf 28')


@pytest.fixture(scope='module')
def table(tmp_path_factory, tiny_checkpoint, main_in_process):
  """One run of the command on a tiny clip with a tiny y x3 model: its printed table and its JSON."""
  json_path = tmp_path_factory.mktemp('video_table') / 'table.json'
  model_dir = tiny_checkpoint(3, 'y')
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    main_in_process('tools.video_table', f'--checkpoint_dirs={model_dir}', '--crf=28,18,0', f'--size={SIZE}',
                    f'--frames={FRAMES}', '--threads=1', f'--json={json_path}')
  return types.SimpleNamespace(lines=printed.getvalue().splitlines(), cells=json.loads(json_path.read_text()),
                               model_dir=model_dir)


def test_the_table_has_a_row_per_upscaler_and_a_column_per_lr_kind(table):
  header, rule, *rows = table.lines[:table.lines.index('')]
  assert header == f'| 96x72 HR, {FRAMES} frames: Y-PSNR (dB) | clean LR | ' + ' | '.join(CRFS) + ' |'
  assert rule == '|---|---|---|---|---|'
  cells = [row.strip('|').split(' | ') for row in rows]
  assert [name.strip() for name, *_ in cells] == ['bicubic', f'`{table.model_dir}`']
  scores = table.cells['psnr_y']
  assert list(scores) == ['bicubic', table.model_dir]
  for (_, *printed), row in zip(cells, scores.values()):
    assert list(row) == ['clean', '0', '18', '28']
    assert all(math.isfinite(psnr) and 10 < psnr < 60 for psnr in row.values()), row
    assert [float(text) for text in printed] == [round(psnr, 2) for psnr in row.values()]
  assert table.cells['clip']['size'] == '96x72' and table.cells['clip']['lr_size'] == '32x24'


def test_compression_lowers_the_scores_and_lossless_h264_scores_as_the_clean_lr(table):
  """crf 0 decodes to the planes encoded, bit for bit: the decoder neither converts range nor matrix, and
  every loss in the other columns is the compression's."""
  for row in table.cells['psnr_y'].values():
    assert row['0'] == row['clean']
    assert row['28'] < row['clean']
  bicubic = table.cells['psnr_y']['bicubic']
  assert bicubic['28'] < bicubic['18'] < bicubic['clean']
  bit_rates = table.cells['clip']['lr_kbps']
  assert bit_rates['28'] < bit_rates['18'] < bit_rates['0']


def test_the_clip_is_a_textured_photo_that_moves_and_the_seed_picks_the_path():
  frames = video_table.hr_clip(96, 72, 3, seed=0)
  assert [frame.shape for frame in frames] == [(72, 96, 3)] * 3
  for earlier, later in zip(frames, frames[1:]):
    assert np.abs(earlier.astype(int) - later).mean() > 2  # a pan of 3 pixels a frame over real texture
  assert all(colour.luminance(frame).std() > 10 for frame in frames)  # not a flat pattern
  windows = np.array(video_table.frame_windows(video_table.photo_strip().width, 96, 72, 3, seed=0))  # [3, 4]
  np.testing.assert_allclose(np.abs(np.diff(windows[:, 0])), video_table.PAN_PIXELS_PER_FRAME)  # a pan
  np.testing.assert_allclose(sorted(windows[:, 2] - windows[:, 0]), [96, 96 * 1.05, 96 * 1.1])  # and a zoom
  np.testing.assert_array_equal(video_table.hr_clip(96, 72, 3, seed=0)[2], frames[2])
  assert not np.array_equal(video_table.hr_clip(96, 72, 3, seed=1)[0], frames[0])


@pytest.mark.parametrize('flag, named', [('--size=2000x360', '--size=2000x360'), ('--size=640', '--size=640'),
                                         ('--crf=60', '--crf=60'), ('--checkpoint_dirs=nowhere', 'nowhere')])
def test_a_bad_flag_is_one_error_line(main_in_process, capsys, flag, named):
  capsys.readouterr()
  with pytest.raises(SystemExit) as stopped:
    main_in_process('tools.video_table', '--frames=2', '--size=48x36', '--threads=1', flag)
  assert stopped.value.code == 1
  errors = capsys.readouterr().err.strip().splitlines()
  assert len(errors) == 1 and errors[0].startswith('error: ') and named in errors[0], errors
