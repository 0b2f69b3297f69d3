"""tools.draw_ps: the README's picture of PS is drawn from the ops' own output."""
import numpy as np
import pytest
from PIL import Image

from tools import draw_ps


@pytest.mark.parametrize('scale,colours', [(2, 3), (3, 1)])
def test_the_labels_read_back_from_phase_shift_follow_its_formula(scale, colours):
  """Every HR pixel is labelled with the LR pixel and channel it came from: c*r*r + p*r + q for PS,
  (p*r + q)*C + c for depth_to_space."""
  ps, d2s = draw_ps.shuffle(draw_ps.labelled_features(2, scale, colours), scale, colours)
  for row in range(2 * scale):
    for column in range(2 * scale):
      pixel = (row // scale) * 2 + column // scale
      p, q = row % scale, column % scale
      for colour in range(colours):
        assert ps[row, column, colour] == draw_ps.CODE * pixel + colour * scale * scale + p * scale + q
        assert d2s[row, column, colour] == draw_ps.CODE * pixel + (p * scale + q) * colours + colour


def test_the_command_writes_the_picture_and_refuses_a_bad_colour_count(tmp_path, run_script, assert_input_error):
  result = run_script('tools.draw_ps', f'--output={tmp_path / "ps.png"}')
  assert result.returncode == 0, result.stderr
  with Image.open(tmp_path / 'ps.png') as picture:
    assert picture.mode == 'RGB' and min(picture.size) > 100
    assert len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0)) > 5  # colours, not a blank page
  assert_input_error(run_script('tools.draw_ps', '--colours=2', f'--output={tmp_path / "bad.png"}'), '--colours')
  assert not (tmp_path / 'bad.png').exists()
