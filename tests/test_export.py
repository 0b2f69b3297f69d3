"""generate.py --export_dir: OpenCV's dnn_superres, a SavedModel and TFLite run the model without this repo
and agree with generate.py."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from superres import checkpoints
from superres import export
from superres import image_files
from superres import inference
from superres import metrics
from superres.runtime import tf

try:
  import cv2  # requirements-export.txt (CI installs it)
except ImportError:
  cv2 = None

needs_opencv = pytest.mark.skipif(cv2 is None, reason='OpenCV is optional: pip install -r requirements-export.txt')


@pytest.fixture(scope='module', params=checkpoints.SHIPPED_MODELS, ids=lambda model: f'{model[0]}_x{model[1]}')
def shipped_export(request, tmp_path_factory):
  """Each shipped model and its exports (generate.py's export, in-process)."""
  channels, scale = request.param
  model = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir(channels, scale), scale, channels)
  export_dir = tmp_path_factory.mktemp('export') / f'{channels}_x{scale}'
  export.export(model, str(export_dir), export.formats_for(channels, []))
  yield model, export_dir
  model.session.close()


@pytest.fixture
def y_export(shipped_export):
  """The exports of the shipped 'y' models: those OpenCV's dnn_superres runs."""
  model, _ = shipped_export
  if model.channels != 'y':
    pytest.skip("dnn_superres runs 'y' models only")
  return shipped_export


def photo(width, height):
  """A crop of the sample photo (scikit-image's astronaut) of an odd size, uint8 RGB."""
  return np.ascontiguousarray(np.asarray(image_files.sample_photo())[100:100 + height, 150:150 + width])


def dnn_superres(path, scale):
  model = cv2.dnn_superres.DnnSuperResImpl_create()
  model.readModel(str(path))
  model.setModel('espcn', scale)
  return model


def test_every_format_is_written_for_a_y_model_and_dnn_superres_is_left_out_for_rgb(shipped_export):
  model, export_dir = shipped_export
  name = f'{model.channels}_x{model.scale}'
  opencv = [f'ESPCN_x{model.scale}.pb'] if model.channels == 'y' else []
  assert sorted(path.name for path in export_dir.iterdir()) == sorted(
      opencv + [f'espcn_{name}.tflite', f'espcn_{name}_float16.tflite', 'saved_model'])


@needs_opencv
def test_opencv_runs_the_export_as_the_network_on_full_range_y(y_export):
  """OpenCV's raw output for full-range Y in [0, 1] is the network's output on the studio-range Y of the same
  pixels, back in full range: the range conversion and PS's channel order are inside the exported graph."""
  model, export_dir = y_export
  path = export_dir / f'ESPCN_x{model.scale}.pb'
  dnn_superres(path, model.scale)  # registers OpenCV's DepthToSpace layer
  net = cv2.dnn.readNetFromTensorflow(str(path))
  full_y = np.random.default_rng(0).uniform(size=(23, 31)).astype(np.float32)
  net.setInput(cv2.dnn.blobFromImage(full_y))
  opencv = net.forward()[0, 0]  # [rH, rW]
  studio_y = (16.0 + 219.0 * full_y) / 255.0
  expected = (255.0 * model.network(studio_y[..., None])[..., 0] - 16.0) / 219.0
  np.testing.assert_allclose(opencv, expected, atol=2e-5)


@needs_opencv
def test_dnn_superres_upsample_gives_generates_luminance_up_to_its_8_bit_colour_conversions(y_export):
  model, export_dir = y_export
  rgb, scale = photo(61, 47), model.scale
  opencv = dnn_superres(export_dir / f'ESPCN_x{scale}.pb', scale).upsample(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
  opencv = cv2.cvtColor(opencv, cv2.COLOR_BGR2RGB)
  assert opencv.shape == (47 * scale, 61 * scale, 3)
  assert metrics.psnr_y(model.upscale(rgb), opencv, scale) > 40.0


def test_the_saved_model_gives_generates_pixels_without_this_repo(shipped_export, tmp_path):
  """Loaded by plain TensorFlow in a process that cannot import this repo's modules, on two odd sizes."""
  model, export_dir = shipped_export
  photos = {'a': photo(61, 47), 'b': photo(33, 75)}
  for name, rgb in photos.items():
    np.save(tmp_path / f'{name}.npy', rgb)
  script = ('import sys, numpy as np, tensorflow as tf\n'
            'assert not any("espcn" in name for name in sys.modules)\n'
            f'serve = tf.saved_model.load({str(export_dir / "saved_model")!r}).signatures["serving_default"]\n'
            'for name in sys.argv[1:]:\n'
            '  np.save(name + "_out.npy", serve(image=tf.constant(np.load(name + ".npy")))["upscaled"].numpy())\n')
  result = subprocess.run([sys.executable, '-c', script, *photos], cwd=tmp_path, capture_output=True, text=True,
                          check=False, env={'PATH': '', 'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert result.returncode == 0, result.stderr
  for name, rgb in photos.items():
    served = np.load(tmp_path / f'{name}_out.npy')
    assert served.dtype == np.uint8 and served.shape == (model.scale * rgb.shape[0], model.scale * rgb.shape[1], 3)
    assert np.abs(served.astype(int) - model.upscale(rgb)).max() <= 1


@pytest.mark.parametrize('suffix,tolerance', [('', 2e-5), ('_float16', 2e-3)])
def test_tflite_runs_the_network(shipped_export, suffix, tolerance):
  model, export_dir = shipped_export
  interpreter = tf.lite.Interpreter(str(export_dir / f'espcn_{model.channels}_x{model.scale}{suffix}.tflite'))
  lr_image = np.random.default_rng(1).uniform(size=(1, 19, 26, model.network_input(photo(4, 4)).shape[-1]))
  lr_image = lr_image.astype(np.float32)
  input_index = interpreter.get_input_details()[0]['index']
  interpreter.resize_tensor_input(input_index, lr_image.shape)
  interpreter.allocate_tensors()
  interpreter.set_tensor(input_index, lr_image)
  interpreter.invoke()
  output = interpreter.get_tensor(interpreter.get_output_details()[0]['index'])
  np.testing.assert_allclose(output[0], model.network(lr_image[0]), atol=tolerance)


def test_a_failed_export_leaves_an_earlier_one_as_it_was(upscaler, tmp_path, monkeypatch):
  """A failure after the SavedModel is written leaves the earlier export's files, alone and unchanged."""
  model = upscaler(3, 'y')
  export_dir = tmp_path / 'export'
  export.export(model, str(export_dir), ['tflite'])
  before = {path.name: path.read_bytes() for path in export_dir.iterdir()}

  def fail(*args, **kwargs):
    raise OSError('disk full')
  monkeypatch.setattr(export, 'write_tflite', fail)
  with pytest.raises(OSError):
    export.export(model, str(export_dir), ['saved_model', 'tflite'])
  assert sorted(path.name for path in tmp_path.iterdir()) == ['export']
  assert {path.name: path.read_bytes() for path in export_dir.iterdir()} == before


def test_an_rgb_model_asked_for_dnn_superres_is_one_error_line(tmp_path, run_script, assert_input_error):
  result = run_script('generate.py', f'--export_dir={tmp_path / "export"}', '--scale=3', '--channels=rgb',
                      '--export_formats=dnn_superres')
  assert 'dnn_superres' in assert_input_error(result, '--export_formats')
  assert not (tmp_path / 'export').exists()


@pytest.mark.parametrize('case', ['missing checkpoint', 'unwritable folder'])
def test_export_bad_input_is_one_error_line(tmp_path, run_script, assert_input_error, case):
  if case == 'missing checkpoint':
    culprit, args = tmp_path / 'no_model', [f'--checkpoint_dir={tmp_path / "no_model"}',
                                           f'--export_dir={tmp_path / "export"}']
  else:
    (tmp_path / 'a_file').write_text('not a folder')
    culprit, args = tmp_path / 'a_file', [f'--export_dir={tmp_path / "a_file" / "export"}']
  assert_input_error(run_script('generate.py', *args, '--scale=3', '--channels=y'), culprit)


def test_the_export_command_writes_the_files_it_prints(tmp_path, run_script):
  result = run_script('generate.py', f'--export_dir={tmp_path / "export"}', '--scale=2', '--channels=y',
                      '--export_formats=dnn_superres')
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[0] == str(tmp_path / 'export' / 'ESPCN_x2.pb')
  graph_def = tf.GraphDef.FromString((tmp_path / 'export' / 'ESPCN_x2.pb').read_bytes())
  assert {node.op for node in graph_def.node} >= {'Conv2D', 'BiasAdd', 'Tanh', 'DepthToSpace'}


@needs_opencv
def test_the_export_table_scores_each_runtime_on_the_evaluations_images(tmp_path, run_script):
  """tools.export_table with OpenCV's files replaced by this repo's own exports: both OpenCV columns must then
  agree, and the generate.py column is generate.py --eval_dir's mean."""
  data_dir, opencv_models = tmp_path / 'data', tmp_path / 'opencv_models'
  for name in ('Set5', 'Set14'):
    (data_dir / name).mkdir(parents=True)
    Image.fromarray(photo(72, 60)).save(data_dir / name / 'photo.png')
  for channels, scale in checkpoints.SHIPPED_MODELS:
    if channels == 'y':
      model = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir('y', scale), scale, 'y')
      export.export(model, str(opencv_models / f'x{scale}'), ['dnn_superres'])
      (opencv_models / f'x{scale}' / f'ESPCN_x{scale}.pb').rename(opencv_models / f'ESPCN_x{scale}.pb')
      model.session.close()
  table_path = tmp_path / 'table.json'
  result = run_script('tools.export_table', f'--data_dir={data_dir}', f'--opencv_models={opencv_models}',
                      f'--json={table_path}')
  assert result.returncode == 0, result.stderr
  table = json.loads(table_path.read_text())
  assert sorted(table) == ['y_x2', 'y_x3', 'y_x4']
  evaluated = run_script('generate.py', f'--eval_dir={data_dir / "Set5"}', '--scale=3', '--channels=y',
                         f'--output_dir={tmp_path / "eval"}', f'--json={tmp_path / "eval.json"}')
  assert evaluated.returncode == 0, evaluated.stderr
  assert table['y_x3']['Set5']['generate.py'] == json.loads((tmp_path / 'eval.json').read_text())['mean']['psnr_y']
  for scores in (scores for by_set in table.values() for scores in by_set.values()):
    assert scores['OpenCV, this export'] == scores["OpenCV, OpenCV's ESPCN file"]
    assert abs(scores['OpenCV, this export'] - scores['generate.py']) < 0.15
    assert abs(scores['TFLite float16 weights (Y)'] - scores['TFLite float32 (Y)']) < 0.01
    assert scores['generate.py'] > scores['bicubic']
