"""The JPEG table: how the x3 models hold up when the LR image is a JPEG, as photos from cameras and the web are.

Rows: bicubic, the paper's y x3 (the shipped checkpoint/espcn_y_x3, trained on clean LR) and the photo models
(checkpoint/espcn_y_x3_jpeg once shipped, or the --checkpoint_dirs given, e.g. a run's best/); columns: the
LR image clean and saved as JPEG at qualities 95, 85, 75 and 50; a table each for Set5 and Set14. Each cell is
the mean Y-PSNR (dB, border 3) that `generate.py --eval_dir=<data_dir>/<set> --eval_jpeg_quality=Q` reports
(Q 0: clean); bicubic upscales the same decoded LR images.

  python -m tools.jpeg_table --data_dir=data --json=result/jpeg_table.json
"""
import os

from absl import app
from absl import flags
from tqdm import tqdm

from superres import checkpoints
from superres import evaluation
from superres import files
from superres import inference
from superres import pairs

FLAGS = flags.FLAGS
EVAL_SETS = ('Set5', 'Set14')
SCALE = 3
PAPER_MODEL = checkpoints.shipped_model_dir('y', SCALE)
PHOTO_MODEL = os.path.join(checkpoints.REPO_ROOT, checkpoints.PHOTO_MODEL_DIR)


def define_flags():
  flags.DEFINE_string('data_dir', 'data', 'Folder holding the Set5 and Set14 folders.')
  flags.DEFINE_list('checkpoint_dirs', [], 'x3 model folders to compare with the paper\'s y x3 (e.g. a run\'s '
                    f'best/), a row each. Default: {checkpoints.PHOTO_MODEL_DIR}, '
                    'once it is shipped.')
  flags.DEFINE_list('qualities', ['0', '95', '85', '75', '50'],
                    'JPEG qualities of the LR images, a column each (0: clean).')
  flags.DEFINE_string('json', '', 'Also write every cell to this JSON file: {set: {"bicubic" or model folder: '
                      '{quality: PSNR}}}.')


def model_dirs(given):
  """The paper's y x3, then the given folders or, by default, the photo model if it is shipped."""
  photo_models = given or ([PHOTO_MODEL] if os.path.isdir(PHOTO_MODEL) else [])
  return [PAPER_MODEL, *photo_models]


def load_model(model_dir):
  """(upscaler, name, label) of an x3 model folder: its name is the folder (repo-relative if shipped), its
  row's label also names the LR it was trained on (config.json: clean, or --lr_jpeg_*)."""
  config = checkpoints.read_config(model_dir) or {}
  channels = config.get('channels', 'y')  # (a folder without a config: read_trained_config says so)
  checkpoints.read_trained_config(model_dir, SCALE, channels)
  training_lr = (f'LR JPEG {config["lr_jpeg_quality"].replace(",", " to ")} in '
                 f'{config["lr_jpeg_fraction"]:.0%}' if config.get('lr_jpeg_quality') else 'clean LR')
  inside_repo = os.path.abspath(model_dir).startswith(checkpoints.SHIPPED_ROOT + os.sep)
  name = os.path.relpath(model_dir, checkpoints.REPO_ROOT) if inside_repo else model_dir
  label = f'ESPCN {channels} x{SCALE}, {training_lr} (`{name}`)'
  return inference.Upscaler.from_checkpoint(model_dir, SCALE, channels), name, label


def score(models, data_dir, qualities):
  """{set: {'bicubic' or model name: {quality: mean Y-PSNR}}}; bicubic upscales the LR images that every
  model gets, and is taken from the first model's runs."""
  cells = {eval_set: {'bicubic': {}, **{name: {} for _, name, _ in models}} for eval_set in EVAL_SETS}
  jobs = [(eval_set, quality, model) for eval_set in EVAL_SETS for quality in qualities for model in models]
  for eval_set, quality, (upscaler, name, _) in tqdm(jobs, desc='evaluations', unit='evaluation', leave=False):
    mean = evaluation.evaluate(upscaler, os.path.join(data_dir, eval_set), None, quality)['mean']
    cells[eval_set][name][quality] = mean['psnr_y']
    cells[eval_set]['bicubic'][quality] = mean['bicubic_psnr_y']
  return cells


def format_tables(cells, labels, qualities):
  """Markdown: a table per set, a row per model (labels: its name -> its row's label), a column per quality."""
  header = ' | '.join('clean' if quality == 0 else f'Q {quality}' for quality in qualities)
  lines = []
  for eval_set, rows in cells.items():
    lines += [f'| {eval_set}, Y-PSNR (dB) | {header} |', '|---|' + '---|' * len(qualities)]
    lines += [f'| {labels.get(name, name)} | ' + ' | '.join(f'{row[quality]:.2f}' for quality in qualities) + ' |'
              for name, row in rows.items()]
    lines.append('')
  return '\n'.join(lines[:-1])


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  qualities = pairs.parse_jpeg_qualities(FLAGS.qualities, 'qualities', lowest=0)
  files.ensure_writable_parent(FLAGS.json)
  for eval_set in EVAL_SETS:
    if not os.path.isdir(os.path.join(FLAGS.data_dir, eval_set)):
      raise files.InputError(f'{os.path.join(FLAGS.data_dir, eval_set)}: no such folder (--data_dir)')
  models = [load_model(model_dir) for model_dir in model_dirs(FLAGS.checkpoint_dirs)]
  cells = score(models, FLAGS.data_dir, qualities)
  print(format_tables(cells, {name: label for _, name, label in models}, qualities))
  if FLAGS.json:
    files.write_json({eval_set: {label: {str(quality): psnr for quality, psnr in row.items()}
                                 for label, row in rows.items()} for eval_set, rows in cells.items()},
                     FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
