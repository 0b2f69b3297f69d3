"""The quality of the exports (generate.py --export_dir) beside generate.py and OpenCV's own ESPCN files.

For each shipped 'y' model and each set, the mean Y-PSNR (dB, border r: generate.py's protocol) of:
generate.py --eval_dir; OpenCV's dnn_superres running this repo's export; OpenCV's dnn_superres running the
ESPCN_x<r>.pb that its documentation points to; the TFLite exports with float32 and float16 weights (the
network's Y output, rounded to 8 bits); and bicubic. OpenCV gets what a user of it has: the LR image as 8-bit
BGR, three channels for a gray image too (cv2.imread's default).

  python -m tools.export_table --data_dir=../shared/data --opencv_models=../shared/models/opencv_espcn
"""
import os
import tempfile
import warnings

import cv2
import numpy as np
from absl import app
from absl import flags

from superres import checkpoints
from superres import colour
from superres import evaluation
from superres import export
from superres import files
from superres import inference
from superres import metrics
from superres import pairs
from superres import runtime
from superres.runtime import tf

FLAGS = flags.FLAGS
EVAL_SETS = ('Set5', 'Set14')


def define_flags():
  flags.DEFINE_string('data_dir', '../shared/data', 'Folder holding the Set5 and Set14 folders.')
  flags.DEFINE_string('opencv_models', '../shared/models/opencv_espcn', "Folder of OpenCV's ESPCN_x<r>.pb files.")
  flags.DEFINE_string('json', '', 'Also write every score to this JSON file.')


def dnn_superres(model_path, scale):
  """OpenCV's super-resolution object running a frozen ESPCN graph, as OpenCV's documentation shows."""
  model = cv2.dnn_superres.DnnSuperResImpl_create()
  model.readModel(model_path)
  model.setModel('espcn', scale)
  return model


def opencv_psnr(model, eval_dir, scale):
  """Mean Y-PSNR of a dnn_superres model on ground-truth images, LR made as the evaluation makes it."""
  scores = []
  for path in files.list_images(eval_dir):
    lr_image, hr_image = pairs.ground_truth_pair(path, scale)
    bgr = cv2.cvtColor(np.asarray(lr_image.convert('RGB')), cv2.COLOR_RGB2BGR)
    sr = cv2.cvtColor(model.upsample(bgr), cv2.COLOR_BGR2RGB)
    hr = np.asarray(hr_image)
    scores.append(metrics.psnr_y(hr, sr[..., 0] if hr.ndim == 2 else sr, scale))  # a gray image stays gray
  return float(np.mean(scores))


def tflite_psnr(path, eval_dir, scale):
  """Mean Y-PSNR of a TFLite export of a 'y' network: its output Y, rounded to 8 bits, against HR's Y."""
  with warnings.catch_warnings(), runtime.quiet_stderr():  # notices: LiteRT will replace it; XNNPACK is on
    warnings.simplefilter('ignore')
    interpreter = tf.lite.Interpreter(path)
  input_index = interpreter.get_input_details()[0]['index']
  output_index = interpreter.get_output_details()[0]['index']
  scores = []
  for image_path in files.list_images(eval_dir):
    lr_image, hr_image = pairs.ground_truth_pair(image_path, scale)
    lr_y = colour.luminance(np.asarray(lr_image)).astype(np.float32)[None, ..., None] / 255.0  # [1, H, W, 1]
    with runtime.quiet_stderr():
      interpreter.resize_tensor_input(input_index, lr_y.shape)
      interpreter.allocate_tensors()
    interpreter.set_tensor(input_index, lr_y)
    interpreter.invoke()
    sr_y = colour.to_uint8(255.0 * interpreter.get_tensor(output_index)[0, ..., 0])
    hr_y = colour.to_uint8(colour.luminance(np.asarray(hr_image)))
    scores.append(metrics.psnr_y(hr_y, sr_y, scale))  # 2-D images: scored as the Y they are
  return float(np.mean(scores))


def scores_of(channels, scale, export_dir):
  """{set: {method: mean PSNR}} for one shipped model."""
  upscaler = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir(channels, scale), scale, channels)
  export.export(upscaler, export_dir, ['dnn_superres', 'tflite'])
  opencv_export = dnn_superres(os.path.join(export_dir, f'ESPCN_x{scale}.pb'), scale)
  theirs = dnn_superres(os.path.join(FLAGS.opencv_models, f'ESPCN_x{scale}.pb'), scale)
  tflite = {suffix: os.path.join(export_dir, f'espcn_{channels}_x{scale}{suffix}.tflite')
            for suffix in ('', '_float16')}
  scores = {}
  for eval_set in EVAL_SETS:
    eval_dir = os.path.join(FLAGS.data_dir, eval_set)
    with tempfile.TemporaryDirectory() as images_dir:
      report = evaluation.evaluate(upscaler, eval_dir, images_dir)
    scores[eval_set] = {'generate.py': report['mean']['psnr_y'],
                        'OpenCV, this export': opencv_psnr(opencv_export, eval_dir, scale),
                        "OpenCV, OpenCV's ESPCN file": opencv_psnr(theirs, eval_dir, scale),
                        'TFLite float32 (Y)': tflite_psnr(tflite[''], eval_dir, scale),
                        'TFLite float16 weights (Y)': tflite_psnr(tflite['_float16'], eval_dir, scale),
                        'bicubic': report['mean']['bicubic_psnr_y']}
  return scores


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  files.ensure_writable_parent(FLAGS.json)
  for folder in [os.path.join(FLAGS.data_dir, name) for name in EVAL_SETS] + [FLAGS.opencv_models]:
    if not os.path.isdir(folder):
      raise files.InputError(f'{folder}: no such folder')
  models = [(channels, scale) for channels, scale in checkpoints.SHIPPED_MODELS if channels == 'y']
  with tempfile.TemporaryDirectory() as work_dir:
    table = {f'y_x{scale}': scores_of(channels, scale, os.path.join(work_dir, f'x{scale}'))
             for channels, scale in models}
  methods = list(next(iter(next(iter(table.values())).values())))
  print('| model, set | ' + ' | '.join(methods) + ' |')
  print('|---|' + '---|' * len(methods))
  for model, by_set in table.items():
    for eval_set, scores in by_set.items():
      print(f'| {model.replace("_", " ")}, {eval_set} | ' + ' | '.join(f'{scores[name]:.2f}' for name in methods)
            + ' |')
  if FLAGS.json:
    files.write_json(table, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
