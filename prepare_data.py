"""Turns training images into aligned low-/high-resolution patch pairs in one HDF5 file (patches.py).

  python prepare_data.py --images_dir=data/T91 --scale=3 --channels=rgb

train.py runs the same preparation itself when its --data file does not exist yet.
"""
from absl import app
from absl import flags

from superres import files
from superres import model_flags
from superres import patches

FLAGS = flags.FLAGS


def define_flags():
  """The command line, defined only when run as a script so that tests can import this file."""
  flags.DEFINE_string('output', '',
                      'HDF5 file to write. Default: checkpoint/train_data_<channels>_x<scale>.h5')
  model_flags.define_model_flags()
  flags.adopt_module_key_flags(model_flags)
  patches.define_patch_flags()
  flags.adopt_module_key_flags(patches)


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  output = FLAGS.output or patches.default_data_path(FLAGS.channels, FLAGS.scale)
  print(patches.prepare(FLAGS.images_dir, output, FLAGS.scale, FLAGS.channels, FLAGS.patch_size, FLAGS.stride,
                        patches.parse_downscales(FLAGS.downscales),
                        patches.parse_lr_jpeg(FLAGS.lr_jpeg_quality, FLAGS.lr_jpeg_fraction, FLAGS.lr_jpeg_seed)))


if __name__ == '__main__':
  define_flags()
  app.run(main)
