"""Ships a training run's best checkpoint as checkpoint/espcn_<channels>_x<scale>/, with its model card.

The card (MODEL.md) is written from the run's own logs, not by hand (checkpoints.model_card): every
command that trained it and every flag's value (runs.jsonl, one line per start or resume), the machine,
the seed, the data, the validation images, the learning-rate schedule, the step and wall time of the
chosen weights and their validation PSNR (validation.jsonl), and for a run started with --init_from the card
of the model it started from (STARTING_POINT.md). The one line no log holds, how the run was picked among
others, comes from --chosen. The logs are shipped next to it.

  python -m tools.ship_model --run_dir=checkpoint/train_y_x3
  python -m tools.ship_model --run_dir=checkpoint/jpeg_run --to=checkpoint/espcn_y_x3_jpeg --chosen="..."
"""
from absl import app
from absl import flags

from superres import checkpoints
from superres import files

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('run_dir', None, 'The --checkpoint_dir of a train.py run with --val_dir.')
  flags.DEFINE_string('to', '', 'Destination folder. Default: the shipped folder for the run\'s scale and '
                      'channel mode, checkpoint/espcn_<channels>_x<scale>.')
  flags.DEFINE_string('chosen', '', 'How this run was picked among others (e.g. "the highest validation score of '
                      'the four runs in docs/JPEG.md"): the one line of the card that no log holds, kept by the '
                      'card\'s "Shipped with" command.')
  flags.mark_flag_as_required('run_dir')


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  checkpoint, destination = checkpoints.ship(FLAGS.run_dir, FLAGS.to, FLAGS.chosen)
  print(f'{checkpoint} -> {destination}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
