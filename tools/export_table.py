"""The quality of the exports (generate.py --export_dir) in each runtime, beside generate.py and OpenCV's own
ESPCN files.

For each shipped 'y' model and each set, the mean Y-PSNR (dB, border r: generate.py's protocol) of:
generate.py --eval_dir; OpenCV's dnn_superres running this repo's export, ESPCN_x<r>.pb in OpenCV up to 5.0
and ESPCN_x<r>.onnx from OpenCV 5.1 on (which reads no TensorFlow file); OpenCV's dnn_superres running the
ESPCN_x<r>.pb that OpenCV's documentation points to (--opencv_models, left out when absent); ONNX Runtime and
LiteRT (float32 and float16 weights) running the network alone, its Y output rounded to 8 bits; and bicubic.
OpenCV gets what a user of it has: the LR image as a PNG file that cv2.imread reads (8-bit BGR, three
channels for a gray image too), and the result as cv2.imwrite writes it.

OpenCV runs in child processes: this environment's (requirements-export.txt pins 5.0), and OpenCV 5.1 from a
folder of its own (--opencv51_dir), since one environment cannot hold both:

  pip install --target=.opencv51 --no-deps -r requirements-opencv51.txt
  python -m tools.export_table --opencv_models=DIR   # DIR: OpenCV's own ESPCN_x2/x3/x4.pb, for comparison
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime
from absl import app
from absl import flags
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from superres import checkpoints
from superres import colour
from superres import evaluation
from superres import export
from superres import files
from superres import inference
from superres import metrics
from superres import pairs
from superres import runtime

FLAGS = flags.FLAGS
EVAL_SETS = ('Set5', 'Set14')
FIRST_ONNX_OPENCV = (5, 1)  # OpenCV's dnn_superres reads ONNX files from 5.1 on, TensorFlow ones before
OPENCV_PB, OPENCV_ONNX = 'OpenCV <= 5.0, .pb', 'OpenCV >= 5.1, .onnx'  # columns: OpenCV with this repo's file
OPENCV_THEIRS = "OpenCV <= 5.0, OpenCV's ESPCN file"
OPENCV_UPSAMPLE = '''import os, sys, cv2
model_path, scale, output_dir, *image_paths = sys.argv[1:]
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(model_path)
sr.setModel("espcn", int(scale))
for path in image_paths:
  cv2.imwrite(os.path.join(output_dir, os.path.basename(path)), sr.upsample(cv2.imread(path)))
'''  # the README's call, on each image; run by opencv_upsample with the OpenCV it chooses


def define_flags():
  flags.DEFINE_string('data_dir', 'data', 'Folder holding the Set5 and Set14 folders (python -m tools.get_data).')
  flags.DEFINE_string('opencv_models', '', "Folder of OpenCV's own ESPCN_x<r>.pb files, those its documentation "
                      'links, for comparison; without it their column is left out.')
  flags.DEFINE_string('opencv51_dir', '.opencv51', 'Folder holding OpenCV >= 5.1 (pip install --target=.opencv51 '
                      '--no-deps -r requirements-opencv51.txt); its column is left out when it does not exist.')
  flags.DEFINE_string('json', '', 'Also write every score to this JSON file.')


def run_with_opencv(cv2_dir, code, *args):
  """Runs Python `code` in a child process that imports cv2 from cv2_dir ('': this environment's); its stdout."""
  env = dict(os.environ, PYTHONPATH=os.path.abspath(cv2_dir)) if cv2_dir else None
  result = subprocess.run([sys.executable, '-c', code, *args], env=env, capture_output=True, text=True, check=False)
  if result.returncode:
    raise RuntimeError(f'OpenCV from {cv2_dir or "this environment"}: {result.stderr.strip()}')
  return result.stdout


def opencv_version(cv2_dir):
  """The version of the OpenCV that cv2_dir ('': this environment) holds, '' when it holds none."""
  try:
    return run_with_opencv(cv2_dir, 'import cv2; print(cv2.__version__)').strip()
  except RuntimeError:
    return ''


def opencv_upsample(cv2_dir, model_path, scale, image_paths, output_dir):
  """Upscales image files with OpenCV's dnn_superres from cv2_dir ('': this environment's) running the ESPCN
  file model_path, as the README shows; the results go into output_dir under the inputs' names."""
  run_with_opencv(cv2_dir, OPENCV_UPSAMPLE, str(model_path), str(scale), str(output_dir), *map(str, image_paths))


def opencv_columns():
  """{column: (cv2_dir, version)}: the OpenCV columns to fill, and the OpenCV that runs each: this
  environment's and --opencv51_dir's, each under the column of the file it reads (.pb up to 5.0, .onnx from
  5.1 on; the first found for each), and OpenCV's own files with the .pb one when --opencv_models exists."""
  columns = {}
  for cv2_dir in [''] + ([FLAGS.opencv51_dir] if os.path.isdir(FLAGS.opencv51_dir) else []):
    version = opencv_version(cv2_dir)
    if version:
      major_minor = tuple(int(part) for part in version.split('.')[:2])
      columns.setdefault(OPENCV_ONNX if major_minor >= FIRST_ONNX_OPENCV else OPENCV_PB, (cv2_dir, version))
  if OPENCV_PB in columns and os.path.isdir(FLAGS.opencv_models):
    columns[OPENCV_THEIRS] = columns[OPENCV_PB]
  return columns


def write_lr_files(eval_dir, scale, lr_dir):
  """Writes each ground-truth image's LR image (as the evaluation makes it) into lr_dir as a PNG file, for
  OpenCV to read; returns [(LR file, HR pixels)]."""
  lr_files = []
  for index, path in enumerate(files.list_images(eval_dir)):
    lr_image, hr_image = pairs.ground_truth_pair(path, scale)
    lr_path = os.path.join(lr_dir, f'{index:03d}.png')
    lr_image.save(lr_path)
    lr_files.append((lr_path, np.asarray(hr_image)))
  return lr_files


def opencv_psnr(cv2_dir, model_path, scale, lr_files):
  """Mean Y-PSNR of OpenCV's dnn_superres from cv2_dir running model_path on the LR files."""
  scores = []
  with tempfile.TemporaryDirectory() as sr_dir:
    opencv_upsample(cv2_dir, model_path, scale, [path for path, _ in lr_files], sr_dir)
    for lr_path, hr in lr_files:
      sr = np.asarray(Image.open(os.path.join(sr_dir, os.path.basename(lr_path))).convert('RGB'))
      scores.append(metrics.psnr_y(hr, sr[..., 0] if hr.ndim == 2 else sr, scale))  # a gray image stays gray
  return float(np.mean(scores))


def network_psnr(run_network, eval_dir, scale):
  """Mean Y-PSNR of a runtime running the 'y' network alone: run_network maps the LR image's Y [H, W] in
  [0, 1] (studio range, as generate.py feeds it) to Y [rH, rW], scored rounded to 8 bits against HR's Y."""
  scores = []
  for image_path in files.list_images(eval_dir):
    lr_image, hr_image = pairs.ground_truth_pair(image_path, scale)
    lr_y = colour.luminance(np.asarray(lr_image)).astype(np.float32) / 255.0  # [H, W]
    sr_y = colour.to_uint8(255.0 * run_network(lr_y))  # [rH, rW]
    hr_y = colour.to_uint8(colour.luminance(np.asarray(hr_image)))
    scores.append(metrics.psnr_y(hr_y, sr_y, scale))  # 2-D images: scored as the Y they are
  return float(np.mean(scores))


def onnxruntime_network(path):
  """The ONNX export of the network in ONNX Runtime, as a function of Y [H, W] (NCHW inside)."""
  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  return lambda lr_y: session.run(None, {'lr_images': lr_y[None, None]})[0][0, 0]  # [1, 1, rH, rW] -> [rH, rW]


def litert_network(path):
  """A TFLite export of the network in LiteRT's interpreter, as a function of Y [H, W] (NHWC inside)."""
  interpreter = Interpreter(path)
  input_index = interpreter.get_input_details()[0]['index']
  output_index = interpreter.get_output_details()[0]['index']

  def run(lr_y):
    with runtime.quiet_stderr():  # LiteRT's note that XNNPACK is on
      interpreter.resize_tensor_input(input_index, (1,) + lr_y.shape + (1,))  # [1, H, W, 1]
      interpreter.allocate_tensors()
    interpreter.set_tensor(input_index, lr_y[None, ..., None])
    interpreter.invoke()
    return interpreter.get_tensor(output_index)[0, ..., 0]  # [1, rH, rW, 1] -> [rH, rW]
  return run


def scores_of(channels, scale, export_dir, opencvs):
  """{set: {method: mean PSNR}} for one shipped model; opencvs: opencv_columns()."""
  upscaler = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir(channels, scale), scale, channels)
  export.export(upscaler, export_dir, ['dnn_superres', 'tflite', 'onnx'])
  opencv_files = {OPENCV_PB: os.path.join(export_dir, f'ESPCN_x{scale}.pb'),
                  OPENCV_ONNX: os.path.join(export_dir, f'ESPCN_x{scale}.onnx'),
                  OPENCV_THEIRS: os.path.join(FLAGS.opencv_models, f'ESPCN_x{scale}.pb')}
  networks = {'ONNX Runtime (Y)': onnxruntime_network(os.path.join(export_dir, f'espcn_{channels}_x{scale}.onnx'))}
  for suffix, name in (('', 'LiteRT float32 (Y)'), ('_float16', 'LiteRT float16 weights (Y)')):
    networks[name] = litert_network(os.path.join(export_dir, f'espcn_{channels}_x{scale}{suffix}.tflite'))
  scores = {}
  for eval_set in EVAL_SETS:
    eval_dir = os.path.join(FLAGS.data_dir, eval_set)
    with tempfile.TemporaryDirectory() as images_dir:
      report = evaluation.evaluate(upscaler, eval_dir, images_dir)
    scores[eval_set] = {'generate.py': report['mean']['psnr_y']}
    with tempfile.TemporaryDirectory() as lr_dir:
      lr_files = write_lr_files(eval_dir, scale, lr_dir)
      for column, (cv2_dir, _) in opencvs.items():
        scores[eval_set][column] = opencv_psnr(cv2_dir, opencv_files[column], scale, lr_files)
    for name, run_network in networks.items():
      scores[eval_set][name] = network_psnr(run_network, eval_dir, scale)
    scores[eval_set]['bicubic'] = report['mean']['bicubic_psnr_y']
  upscaler.session.close()
  return scores


def opencv_notes(opencvs):
  """Which OpenCV ran each OpenCV column, and why a column is missing: one line."""
  notes = [f'{column}: OpenCV {version} from {cv2_dir or "this environment"}'
           for column, (cv2_dir, version) in opencvs.items()]
  if OPENCV_PB not in opencvs:
    notes.append(f'no "{OPENCV_PB}": no OpenCV < 5.1 here (pip install -r requirements-export.txt)')
  if OPENCV_ONNX not in opencvs:
    notes.append(f'no "{OPENCV_ONNX}": no OpenCV >= 5.1 in --opencv51_dir={FLAGS.opencv51_dir}')
  if OPENCV_THEIRS not in opencvs:
    notes.append(f'no "{OPENCV_THEIRS}": it needs OpenCV < 5.1 and --opencv_models={FLAGS.opencv_models}')
  return '; '.join(notes)


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  files.ensure_writable_parent(FLAGS.json)
  for folder in [os.path.join(FLAGS.data_dir, name) for name in EVAL_SETS]:
    if not os.path.isdir(folder):
      raise files.InputError(f'{folder}: no such folder (python -m tools.get_data fills data/)')
  opencvs = opencv_columns()
  models = [(channels, scale) for channels, scale in checkpoints.SHIPPED_MODELS if channels == 'y']
  with tempfile.TemporaryDirectory() as work_dir:
    table = {f'y_x{scale}': scores_of(channels, scale, os.path.join(work_dir, f'x{scale}'), opencvs)
             for channels, scale in models}
  methods = list(next(iter(next(iter(table.values())).values())))
  print('| model, set | ' + ' | '.join(methods) + ' |')
  print('|---|' + '---|' * len(methods))
  for model, by_set in table.items():
    for eval_set, scores in by_set.items():
      print(f'| {model.replace("_", " ")}, {eval_set} | ' + ' | '.join(f'{scores[name]:.2f}' for name in methods)
            + ' |')
  print(f'\n{opencv_notes(opencvs)}')
  if FLAGS.json:
    files.write_json(table, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
