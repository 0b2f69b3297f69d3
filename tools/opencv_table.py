"""The quality of the dnn_superres export through OpenCV, beside generate.py and OpenCV's own ESPCN files.

For each shipped 'y' model and each set, the mean Y-PSNR (dB, border r: generate.py's protocol) of:
generate.py --eval_dir; OpenCV's dnn_superres running this repo's export (generate.py --export_dir); OpenCV's
dnn_superres running the ESPCN_x<r>.pb that its documentation points to; and bicubic. OpenCV gets what a user
of it has: the LR image as 8-bit BGR, three channels for a gray image too (cv2.imread's default).

  python -m tools.opencv_table --data_dir=../shared/data --opencv_models=../shared/models/opencv_espcn
"""
import os
import tempfile

import cv2
import numpy as np
from absl import app
from absl import flags

import checkpoints
import evaluation
import export
import inference
import utils

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
  for path in utils.list_images(eval_dir):
    lr_image, hr_image = utils.ground_truth_pair(path, scale)
    bgr = cv2.cvtColor(np.asarray(lr_image.convert('RGB')), cv2.COLOR_RGB2BGR)
    sr = cv2.cvtColor(model.upsample(bgr), cv2.COLOR_BGR2RGB)
    hr = np.asarray(hr_image)
    scores.append(utils.psnr_y(hr, sr[..., 0] if hr.ndim == 2 else sr, scale))  # a gray image stays gray
  return float(np.mean(scores))


def scores_of(channels, scale, export_dir):
  """{set: {method: mean PSNR}} for one shipped model."""
  upscaler = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir(channels, scale), scale, channels)
  exported = dnn_superres(export.export(upscaler, export_dir, ['dnn_superres'])[0], scale)
  theirs = dnn_superres(os.path.join(FLAGS.opencv_models, f'ESPCN_x{scale}.pb'), scale)
  scores = {}
  for eval_set in EVAL_SETS:
    eval_dir = os.path.join(FLAGS.data_dir, eval_set)
    with tempfile.TemporaryDirectory() as images_dir:
      report = evaluation.evaluate(upscaler, eval_dir, images_dir)
    scores[eval_set] = {'generate.py': report['mean']['psnr_y'],
                        'OpenCV, this export': opencv_psnr(exported, eval_dir, scale),
                        "OpenCV, OpenCV's ESPCN file": opencv_psnr(theirs, eval_dir, scale),
                        'bicubic': report['mean']['bicubic_psnr_y']}
  return scores


@utils.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  for folder in [os.path.join(FLAGS.data_dir, name) for name in EVAL_SETS] + [FLAGS.opencv_models]:
    if not os.path.isdir(folder):
      raise utils.InputError(f'{folder}: no such folder')
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
    utils.write_json(table, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
