"""generate.py --export_dir: OpenCV's dnn_superres (5.0 and 5.1), a SavedModel, LiteRT and ONNX Runtime run the
model without this repo and agree with generate.py."""
import importlib.util
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import espcn
from conftest import REPO_ROOT
from superres import checkpoints
from superres import export
from superres import files
from superres import image_files
from superres import inference
from superres import metrics
from superres.runtime import tf

# The export checks need the optional runtimes of requirements-export.txt (.ci/run installs them).
onnx = pytest.importorskip('onnx', reason='pip install -r requirements-export.txt')
onnxruntime = pytest.importorskip('onnxruntime', reason='pip install -r requirements-export.txt')
Interpreter = pytest.importorskip('ai_edge_litert.interpreter',
                                  reason='pip install -r requirements-export.txt').Interpreter
helper = onnx.helper
from tools import export_table  # pylint: disable=wrong-import-position  (it imports those runtimes)

try:
  import cv2  # requirements-export.txt (CI installs it)
except ImportError:
  cv2 = None

OPENCV51_DIR = REPO_ROOT / '.opencv51'  # requirements-opencv51.txt, installed with pip --target
needs_opencv = pytest.mark.skipif(cv2 is None, reason='OpenCV is optional: pip install -r requirements-export.txt')
needs_opencv51 = pytest.mark.skipif(not OPENCV51_DIR.is_dir(), reason='OpenCV 5.1 is optional: pip install '
                                    '--target=.opencv51 --no-deps -r requirements-opencv51.txt')


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


def full_range_network(model, full_y):
  """What OpenCV's files compute of full-range Y [H, W] in [0, 1]: the network's output on the studio-range Y
  of the same pixels, back in full range."""
  studio_y = (16.0 + 219.0 * full_y) / 255.0
  return (255.0 * model.network(studio_y[..., None])[..., 0] - 16.0) / 219.0  # [rH, rW]


def test_every_format_is_written_for_a_y_model_and_opencvs_files_are_left_out_for_rgb(shipped_export):
  model, export_dir = shipped_export
  name = f'{model.channels}_x{model.scale}'
  opencv = [f'ESPCN_x{model.scale}.pb', f'ESPCN_x{model.scale}.onnx'] if model.channels == 'y' else []
  assert sorted(path.name for path in export_dir.iterdir()) == sorted(
      opencv + [f'espcn_{name}.tflite', f'espcn_{name}_float16.tflite', f'espcn_{name}.onnx', 'saved_model'])


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
  np.testing.assert_allclose(opencv, full_range_network(model, full_y), atol=2e-5)


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
def test_litert_runs_the_tflite_network_without_a_deprecation_warning(shipped_export, suffix, tolerance):
  model, export_dir = shipped_export
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    interpreter = Interpreter(str(export_dir / f'espcn_{model.channels}_x{model.scale}{suffix}.tflite'))
  assert not caught, [str(warning.message) for warning in caught]
  lr_image = np.random.default_rng(1).uniform(size=(1, 19, 26, model.network_input(photo(4, 4)).shape[-1]))
  lr_image = lr_image.astype(np.float32)
  input_index = interpreter.get_input_details()[0]['index']
  interpreter.resize_tensor_input(input_index, lr_image.shape)
  interpreter.allocate_tensors()
  interpreter.set_tensor(input_index, lr_image)
  interpreter.invoke()
  output = interpreter.get_tensor(interpreter.get_output_details()[0]['index'])
  np.testing.assert_allclose(output[0], model.network(lr_image[0]), atol=tolerance)


def onnx_sizes(value):
  """The sizes of an ONNX graph input or output: numbers where fixed, names where dynamic."""
  return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


def test_onnx_runtime_runs_the_network_nchw_at_any_size(shipped_export):
  """espcn_C_xS.onnx: opset 17, [1, C, height, width] in and [1, C, r*height, r*width] out, and ONNX Runtime's
  output is the network's on two crops of a photo of different sizes."""
  model, export_dir = shipped_export
  path = export_dir / f'espcn_{model.channels}_x{model.scale}.onnx'
  graph, scale = onnx.load(path), model.scale
  num_channels = model.network_input(photo(4, 4)).shape[-1]
  assert [(opset.domain, opset.version) for opset in graph.opset_import if opset.domain in ('', 'ai.onnx')] == [
      ('', 17)]  # as issue 31 asks: ONNX Runtime and OpenCV 5.1 run it
  assert onnx_sizes(graph.graph.input[0]) == [1, num_channels, 'height', 'width']
  assert onnx_sizes(graph.graph.output[0]) == [1, num_channels, f'{scale}*height', f'{scale}*width']
  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  for width, height in ((61, 47), (33, 75)):
    lr_image = model.network_input(photo(width, height))  # [H, W, C]
    output = session.run(None, {'lr_images': lr_image.transpose(2, 0, 1)[None]})[0]  # [1, C, rH, rW]
    np.testing.assert_allclose(output[0].transpose(1, 2, 0), model.network(lr_image), atol=1e-5)


def test_opencvs_onnx_file_is_the_pb_graph_nhwc_in_nchw_out(y_export):
  """ESPCN_xS.onnx, for OpenCV 5.1's dnn_superres: full-range Y [1, H, W, 1] in (as it feeds it), [1, 1, rH, rW]
  out (as it reads it), and the .pb graph's values, in ONNX Runtime."""
  model, export_dir = y_export
  path = export_dir / f'ESPCN_x{model.scale}.onnx'
  assert onnx_sizes(onnx.load(path).graph.input[0]) == [1, 'height', 'width', 1]
  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  full_y = np.random.default_rng(0).uniform(size=(23, 31)).astype(np.float32)
  output = session.run(None, {'input': full_y[None, ..., None]})[0]
  assert output.shape == (1, 1, 23 * model.scale, 31 * model.scale)
  np.testing.assert_allclose(output[0, 0], full_range_network(model, full_y), atol=2e-5)


@needs_opencv
@needs_opencv51
def test_opencv_51_upsamples_the_onnx_file_as_opencv_50_does_the_pb(y_export, tmp_path):
  """The README's call, in OpenCV 5.1 (a child process importing .opencv51) with ESPCN_xS.onnx and in this
  environment's OpenCV 5.0 with ESPCN_xS.pb: the same pixels up to 1 in 8 bits, and generate.py's Y."""
  model, export_dir = y_export
  rgb, scale = photo(61, 47), model.scale
  bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
  cv2.imwrite(str(tmp_path / 'photo.png'), bgr)
  (tmp_path / 'out').mkdir()
  export_table.opencv_upsample(str(OPENCV51_DIR), export_dir / f'ESPCN_x{scale}.onnx', scale,
                               [tmp_path / 'photo.png'], tmp_path / 'out')
  opencv51 = cv2.imread(str(tmp_path / 'out' / 'photo.png'))
  opencv50 = dnn_superres(export_dir / f'ESPCN_x{scale}.pb', scale).upsample(bgr)
  assert opencv51.shape == opencv50.shape == (47 * scale, 61 * scale, 3)
  assert np.abs(opencv51.astype(int) - opencv50).max() <= 1
  assert metrics.psnr_y(model.upscale(rgb), cv2.cvtColor(opencv51, cv2.COLOR_BGR2RGB), scale) > 40.0


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_ps_is_onnxs_depth_to_space_in_crd_mode(channels, scale):
  """espcn.phase_shift's channel order, c*r*r + p*r + q, is ONNX DepthToSpace's mode='CRD' for any C, run by
  ONNX Runtime; for C = 1 it is also mode='DCR', TensorFlow's depth_to_space."""
  features = np.random.default_rng(2).uniform(size=(2, 5, 7, scale * scale * channels)).astype(np.float32)
  with tf.Graph().as_default(), tf.Session() as session:
    expected = session.run(espcn.phase_shift(tf.constant(features), scale, channels))  # [N, rH, rW, C]
  for mode in ('CRD',) + (('DCR',) if channels == 1 else ()):
    node = helper.make_node('DepthToSpace', ['features'], ['image'], blocksize=scale, mode=mode)
    graph = helper.make_graph([node], 'ps', [helper.make_tensor_value_info('features', onnx.TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info('image', onnx.TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', export.ONNX_OPSET)], ir_version=8)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    image = session.run(None, {'features': features.transpose(0, 3, 1, 2)})[0]  # NCHW
    np.testing.assert_array_equal(image.transpose(0, 2, 3, 1), expected)


def test_without_tf2onnx_the_default_leaves_onnx_out_and_asking_for_it_is_an_input_error(monkeypatch):
  """requirements-export.txt is optional: a plain install still exports the rest, and says what onnx needs."""
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
  assert export.formats_for('y', []) == ['dnn_superres', 'saved_model', 'tflite']
  with pytest.raises(files.InputError, match='tf2onnx'):
    export.formats_for('rgb', ['onnx'])


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
  """tools.export_table with OpenCV's files replaced by this repo's own exports: both OpenCV 5.0 columns must
  then agree, OpenCV 5.1's (.opencv51, as CI installs it) with them, ONNX Runtime with LiteRT, and the
  generate.py column is generate.py --eval_dir's mean."""
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
    assert scores[export_table.OPENCV_PB] == scores[export_table.OPENCV_THEIRS]
    assert abs(scores[export_table.OPENCV_PB] - scores['generate.py']) < 0.15
    if OPENCV51_DIR.is_dir():
      assert abs(scores[export_table.OPENCV_ONNX] - scores[export_table.OPENCV_PB]) < 0.01
    assert abs(scores['ONNX Runtime (Y)'] - scores['LiteRT float32 (Y)']) < 0.01
    assert abs(scores['LiteRT float16 weights (Y)'] - scores['LiteRT float32 (Y)']) < 0.01
    assert scores['generate.py'] > scores['bicubic']
