"""generate.py: every image comes out exactly r times larger, of the same kind, and scored correctly."""
import json

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from superres import checkpoints
from superres import image_files
from superres import inference
from conftest import smooth_rgb
from superres.runtime import tf

ODD_WIDTH, ODD_HEIGHT = 37, 23
# Mode of the input image -> mode of the upscaled one: gray stays gray, alpha (or a transparent palette
# entry) is kept, a palette image comes out as RGB.
MODE_AFTER_UPSCALING = {'RGB': 'RGB', 'L': 'L', 'RGBA': 'RGBA', 'LA': 'LA', 'P': 'RGB',
                        'P+transparency': 'RGBA'}


def saved_and_loaded(image, path):
  """The image as generate.py gets it: written to a PNG file and read back with image_files.load_image."""
  image.save(path)
  return image_files.load_image(str(path))


def alpha_ramp_after_upscaling(width, height, scale):
  """What a left-to-right alpha ramp 0..255 over `width` pixels should look like r times larger: the ramp
  sampled at the centres of the HR pixels (clamped at the edges)."""
  lr_coordinates = np.clip((np.arange(width * scale) + 0.5) / scale - 0.5, 0, width - 1)
  ramp = np.interp(lr_coordinates, np.arange(width), np.linspace(0, 255, width))
  return np.tile(ramp, (height * scale, 1))


@pytest.mark.parametrize('mode', list(MODE_AFTER_UPSCALING))
@pytest.mark.parametrize('channels', ['rgb', 'y'])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_upscaled_image_is_exactly_r_times_larger_and_keeps_its_mode(
    tmp_path, make_image, upscaler, scale, channels, mode):
  image = saved_and_loaded(make_image(ODD_WIDTH, ODD_HEIGHT, mode=mode), tmp_path / 'input.png')
  upscaled = Image.fromarray(inference.upscale_image(upscaler(scale, channels), image))
  assert upscaled.size == (ODD_WIDTH * scale, ODD_HEIGHT * scale)
  assert upscaled.mode == MODE_AFTER_UPSCALING[mode]


@pytest.mark.parametrize('channels', ['rgb', 'y'])
@pytest.mark.parametrize('mode,opaque_mode', [('RGBA', 'RGB'), ('LA', 'L'), ('P+transparency', 'RGB')])
def test_alpha_is_upscaled_alongside_and_does_not_change_the_colours(
    tmp_path, make_image, upscaler, channels, mode, opaque_mode):
  """Transparency is carried over (the alpha ramp stays a ramp, r times larger) and the network sees the
  same colours as for the opaque version of the image."""
  scale = 3
  model = upscaler(scale, channels)
  image = saved_and_loaded(make_image(ODD_WIDTH, ODD_HEIGHT, mode=mode), tmp_path / 'input.png')
  upscaled = Image.fromarray(inference.upscale_image(model, image))
  # (built from the pixels alone: Pillow's convert() would carry a palette's transparent colour over)
  opaque = inference.upscale_image(model, Image.fromarray(np.asarray(image.convert(opaque_mode))))
  np.testing.assert_array_equal(np.asarray(upscaled.convert(opaque_mode)), opaque)
  if mode != 'P+transparency':  # (a palette carries one transparent colour, not a ramp)
    alpha = np.asarray(upscaled.getchannel('A'), np.float64)
    assert np.abs(alpha - alpha_ramp_after_upscaling(ODD_WIDTH, ODD_HEIGHT, scale)).max() <= 1.5


@pytest.mark.parametrize('channels', ['rgb', 'y'])
def test_palette_image_is_upscaled_as_its_rgb_colours(tmp_path, make_image, upscaler, channels):
  image = saved_and_loaded(make_image(ODD_WIDTH, ODD_HEIGHT, mode='P'), tmp_path / 'input.png')
  model = upscaler(2, channels)
  np.testing.assert_array_equal(inference.upscale_image(model, image),
                                inference.upscale_image(model, image.convert('RGB')))


@pytest.mark.parametrize('channels', ['y', 'rgb'])
def test_a_gray_image_comes_out_as_the_networks_gray_level_rounded(upscaler, channels):
  """Gray in, gray out, and the pixels are the network's: 'y' runs the network on the gray level taken as Y,
  'rgb' runs it on R = G = B and keeps the mean of its three channels; either rounded to 8 bits."""
  model = upscaler(3, channels)
  gray = smooth_rgb(19, 23, seed=8)[..., 1]  # uint8 [H, W]
  level = gray.astype(np.float32)[..., None] / 255.0  # [H, W, 1] in [0, 1]
  sr = model.network(level if channels == 'y' else np.repeat(level, 3, axis=2))  # [rH, rW, C]
  expected = np.clip(np.rint(255.0 * sr.mean(axis=2)), 0, 255).astype(np.uint8)
  assert 0 < expected.min() and expected.max() < 255  # nothing clipped: the rounding is what is checked
  np.testing.assert_array_equal(model.upscale(gray), expected)
  np.testing.assert_array_equal(inference.upscale_image(model, Image.fromarray(gray)), expected)
  if channels == 'rgb':  # the same gray as an RGB image: its channels, each rounded, average to that gray
    as_colour = model.upscale(np.dstack([gray] * 3)).astype(np.float64)
    unclipped = ((0 < as_colour) & (as_colour < 255)).all(axis=2)  # (the untrained network's R, G, B differ)
    assert unclipped.mean() > 0.8
    assert np.abs(as_colour.mean(axis=2) - expected)[unclipped].max() <= 1.0 + 1e-9  # two roundings


@pytest.mark.slow
def test_generate_script_upscales_a_folder_of_mixed_images(tmp_path, make_image, run_script, trained_run):
  """The command line on a folder: one <stem>_x3.png per input, r times larger, of the right mode, and the
  very bytes that the same checkpoint restored in this process gives (restore is exact across processes)."""
  inputs = tmp_path / 'inputs'
  inputs.mkdir()
  images = {'odd': make_image(ODD_WIDTH, ODD_HEIGHT), 'gray': make_image(21, 17, mode='L'),
            'rgba': make_image(19, 25, mode='RGBA'), 'palette': make_image(15, 13, mode='P'),
            'gray_alpha': make_image(11, 9, mode='LA')}
  for stem, image in images.items():
    image.save(inputs / f'{stem}.png')
  output_dir = tmp_path / 'out'
  result = run_script('generate.py', f'--input={inputs}', f'--output_dir={output_dir}', '--scale=3',
                      '--channels=rgb', f'--checkpoint_dir={trained_run.checkpoint_dir}')
  assert result.returncode == 0, result.stderr
  assert sorted(path.name for path in output_dir.iterdir()) == sorted(f'{stem}_x3.png' for stem in images)
  expected_modes = {'odd': 'RGB', 'gray': 'L', 'rgba': 'RGBA', 'palette': 'RGB', 'gray_alpha': 'LA'}
  for stem, image in images.items():
    with Image.open(output_dir / f'{stem}_x3.png') as upscaled:
      assert upscaled.size == (image.width * 3, image.height * 3)
      assert upscaled.mode == expected_modes[stem]
  model = inference.Upscaler.from_checkpoint(str(trained_run.checkpoint_dir), 3, 'rgb')
  try:
    in_process = model.upscale(np.asarray(images['odd']))
  finally:
    model.session.close()
  np.testing.assert_array_equal(np.asarray(Image.open(output_dir / 'odd_x3.png')), in_process)


def test_generate_script_takes_a_comma_separated_list_with_a_y_model_at_x2(
    tmp_path, make_image, run_script, tiny_checkpoint):
  make_image(ODD_WIDTH, ODD_HEIGHT, seed=1).save(tmp_path / 'first.png')
  make_image(29, 31, seed=2).convert('RGB').save(tmp_path / 'second.jpg', quality=95)
  output_dir = tmp_path / 'out'
  result = run_script('generate.py', f'--input={tmp_path / "first.png"},{tmp_path / "second.jpg"}',
                      f'--output_dir={output_dir}', '--scale=2', '--channels=y',
                      f'--checkpoint_dir={tiny_checkpoint(2, "y")}')
  assert result.returncode == 0, result.stderr
  with Image.open(output_dir / 'first_x2.png') as first, Image.open(output_dir / 'second_x2.png') as second:
    assert (first.size, first.mode) == ((ODD_WIDTH * 2, ODD_HEIGHT * 2), 'RGB')
    assert (second.size, second.mode) == ((29 * 2, 31 * 2), 'RGB')


def test_generate_with_no_arguments_upscales_the_sample_photo_into_result_in_the_current_folder(
    tmp_path, run_script):
  """The README's first command: `python generate.py` in any folder writes result/astronaut_x3.png there,
  the shipped rgb x3 model's upscaling of the sample photo (found beside the code, not in the folder)."""
  result = run_script('generate.py', cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob('*')) == [
      'result', 'result/astronaut_x3.png']
  with Image.open(tmp_path / 'result' / 'astronaut_x3.png') as upscaled:
    assert (upscaled.size, upscaled.mode) == ((1536, 1536), 'RGB')
    pixels = np.asarray(upscaled)
  model = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir('rgb', 3), 3, 'rgb')
  try:
    np.testing.assert_array_equal(pixels, model.upscale(np.asarray(image_files.sample_photo())))
  finally:
    model.session.close()


@pytest.mark.slow
def test_evaluation_writes_the_four_images_and_a_json_report_whose_scores_check_out(
    tmp_path, make_image, run_script, trained_run, reference_luminance):
  """--eval_dir: for each ground-truth image, LR/bicubic/ESPCN/HR PNGs of consistent sizes, and a JSON
  report whose PSNR/SSIM are those of the saved images (recomputed with scikit-image, border = scale)."""
  eval_dir = tmp_path / 'ground_truth'
  eval_dir.mkdir()
  make_image(41, 35, seed=5).save(eval_dir / 'colour.png')  # 41x35 -> HR 39x33, LR 13x11
  make_image(38, 30, mode='L', seed=6).save(eval_dir / 'gray.png')  # -> HR 36x30, LR 12x10
  output_dir, report_path = tmp_path / 'eval', tmp_path / 'report' / 'scores.json'
  result = run_script('generate.py', f'--eval_dir={eval_dir}', f'--output_dir={output_dir}', '--scale=3',
                      '--channels=rgb', f'--checkpoint_dir={trained_run.checkpoint_dir}', f'--json={report_path}')
  assert result.returncode == 0, result.stderr
  report = json.loads(report_path.read_text())
  assert report['scale'] == 3 and report['channels'] == 'rgb'
  assert report['checkpoint'].endswith('espcn.ckpt-300')
  assert [row['name'] for row in report['images']] == ['colour', 'gray']
  hr_sizes = {'colour': (39, 33), 'gray': (36, 30)}
  for row in report['images']:
    pictures = {suffix: Image.open(output_dir / f'{row["name"]}_{suffix}.png')
                for suffix in ('lr', 'bicubic', 'espcn', 'hr')}
    hr_width, hr_height = hr_sizes[row['name']]
    assert pictures['lr'].size == (hr_width // 3, hr_height // 3)
    for suffix in ('bicubic', 'espcn', 'hr'):
      assert pictures[suffix].size == (hr_width, hr_height)
    hr = reference_luminance(pictures['hr'])[3:-3, 3:-3]
    for method, key in (('espcn', ''), ('bicubic', 'bicubic_')):
      test = reference_luminance(pictures[method])[3:-3, 3:-3]
      assert row[f'{key}psnr_y'] == pytest.approx(peak_signal_noise_ratio(hr, test, data_range=255), abs=0.01)
      assert row[f'{key}ssim_y'] == pytest.approx(structural_similarity(
          hr, test, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255), abs=1e-3)
  for key in ('psnr_y', 'ssim_y', 'bicubic_psnr_y', 'bicubic_ssim_y'):
    assert report['mean'][key] == pytest.approx(np.mean([row[key] for row in report['images']]))
  assert '| **mean** |' in result.stdout


@pytest.mark.parametrize('channels', ['rgb', 'y'])
def test_bfloat16_runs_layer_2_in_bfloat16_within_two_gray_levels_of_float32(tiny_checkpoint, channels):
  checkpoint_dir = tiny_checkpoint(3, channels)
  exact = inference.Upscaler.from_checkpoint(checkpoint_dir, 3, channels)
  reduced = inference.Upscaler.from_checkpoint(checkpoint_dir, 3, channels, precision='bfloat16')
  convolution_types = [op.get_attr('T') for op in reduced.session.graph.get_operations()
                       if op.type == 'Conv2D' and op.name.startswith('layer')]  # the network's, not bicubic's
  assert convolution_types == [tf.float32, tf.bfloat16, tf.float32]
  image = smooth_rgb(20, 24)
  difference = np.abs(exact.upscale(image).astype(int) - reduced.upscale(image))
  assert difference.max() <= 2 and difference.mean() < 0.3  # (untrained weights: larger than a real model's)
