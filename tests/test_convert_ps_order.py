"""tools.convert_ps_order: a model trained in PS's earlier channel order is refused with the command that
converts it, and converted it gives exactly the outputs it gave before (layer 3 permuted, nothing else)."""
import json
import shutil

import numpy as np
import pytest

from conftest import smooth_rgb
from superres import checkpoints
from superres import inference
from tools import convert_ps_order


def in_the_old_order(model_dir, old_dir, scale, channels):
  """A copy of a current model as an earlier version would have trained it: layer 3's channel c*r*r + q*r + p
  holding what PS now reads from channel c*r*r + p*r + q, and a config without 'ps_order'."""
  shutil.copytree(model_dir, old_dir)
  perm = [colour * scale * scale + p * scale + q  # old channel c*r*r + q*r + p <- current channel
          for colour in range(3 if channels == 'rgb' else 1) for q in range(scale) for p in range(scale)]
  convert_ps_order.convert_checkpoint(checkpoints.latest_checkpoint(str(old_dir)), perm)
  config = json.loads((old_dir / 'config.json').read_text())
  del config['ps_order']
  (old_dir / 'config.json').write_text(json.dumps(config))


def test_the_permutation_swaps_row_and_column_offsets_in_each_colour_block():
  np.testing.assert_array_equal(convert_ps_order.old_to_new_order(2, 2), [0, 2, 1, 3, 4, 6, 5, 7])


@pytest.mark.parametrize('scale, channels', [(3, 'rgb'), (2, 'y')])
def test_an_old_order_model_is_refused_then_converted_to_the_same_outputs(
    tiny_checkpoint, main_in_process, tmp_path, capsys, scale, channels):
  model_dir = tiny_checkpoint(scale, channels)
  lr_image = smooth_rgb(12, 10, seed=5)
  expected = inference.Upscaler.from_checkpoint(model_dir, scale, channels).upscale(lr_image)
  old_dir = tmp_path / 'old'
  in_the_old_order(model_dir, old_dir, scale, channels)
  capsys.readouterr()  # the tiny checkpoint's training, if this test made it

  with pytest.raises(SystemExit):
    main_in_process('generate', f'--checkpoint_dir={old_dir}', f'--scale={scale}', f'--channels={channels}',
                    f'--output_dir={tmp_path / "out"}')
  error = capsys.readouterr().err.strip().splitlines()
  assert len(error) == 1 and f'python -m tools.convert_ps_order --model_dir={old_dir}' in error[0]

  main_in_process('tools.convert_ps_order', f'--model_dir={old_dir}')
  assert json.loads((old_dir / 'config.json').read_text())['ps_order'] == 'c*r*r + p*r + q'
  converted = inference.Upscaler.from_checkpoint(str(old_dir), scale, channels).upscale(lr_image)
  np.testing.assert_array_equal(converted, expected)
