"""Converts a model folder trained with PS's earlier channel order to the blog's order, outputs unchanged.

Until PS took the blog's order, espcn.phase_shift read the HR pixel at (p, q) of colour c's cell from
channel c*r*r + q*r + p (the cell filled column by column); it now reads channel c*r*r + p*r + q (row by
row, as the blog's `_phase_shift` and, for one channel, tf.nn.depth_to_space). Layer 3's output channels
are those PS reads, so moving its weights and bias (and their Adam slots) from one order to the other
gives exactly the same network. In each r*r block the move swaps p and q: it is its own inverse.

  python -m tools.convert_ps_order --model_dir=checkpoint/train_y_x3

Every checkpoint the folder's state file names is converted, and its best/ too; config.json gets
'ps_order'; a MODEL.md card gets a line saying so. The folder is rebuilt beside itself and swapped in
when complete, so an interrupted conversion leaves the old folder as it was.
"""
import os
import shutil

import numpy as np
from absl import app
from absl import flags

from superres.runtime import tf  # first: TensorFlow's start-up settings, before espcn imports it
import espcn
from superres import checkpoints
from superres import files
from superres import model_flags

FLAGS = flags.FLAGS
LAYER3 = 'layer3-conv3/'  # weights, bias and their optimizer slots: everything whose last axis PS reads


def define_flags():
  flags.DEFINE_string('model_dir', None, 'A run folder or model folder whose config.json has no ps_order.')
  flags.mark_flag_as_required('model_dir')


def old_to_new_order(scale, channels):
  """perm with new[..., k] = old[..., perm[k]]: channel c*r*r + p*r + q now holds old c*r*r + q*r + p."""
  cell = np.arange(scale * scale).reshape(scale, scale).T.reshape(-1)  # [p*r + q] -> q*r + p
  return np.concatenate([colour * scale * scale + cell for colour in range(channels)])


def convert_checkpoint(checkpoint, perm):
  """Rewrites one checkpoint (path prefix) in place with layer 3's variables permuted on their last axis."""
  reader = tf.train.load_checkpoint(checkpoint)
  step = int(reader.get_tensor('global_step'))
  graph = tf.Graph()
  with graph.as_default():
    variables = {}
    for name in sorted(reader.get_variable_to_shape_map()):
      value = reader.get_tensor(name)
      if name.startswith(LAYER3):
        value = value[..., perm]  # [..., r*r*C]: the channels PS reads, in the new order
      variables[name] = tf.Variable(value, name=name.replace('/', '_'))
    saver = tf.train.Saver(variables, save_relative_paths=True)
    with tf.Session(graph=graph) as session:
      session.run(tf.global_variables_initializer())
      prefix = checkpoint.rsplit('-', 1)[0]
      saver.save(session, prefix, global_step=step, write_state=False, write_meta_graph=False)
  if os.path.exists(f'{checkpoint}.meta'):
    os.remove(f'{checkpoint}.meta')  # the old training graph, with the old PS; restores rebuild the graph from code


def convert_folder(folder):
  """Converts every checkpoint that `folder`'s state file names, then its config (and its card)."""
  config_path = os.path.join(folder, checkpoints.CONFIG_FILE)
  config = checkpoints.read_config_file(folder)
  perm = old_to_new_order(config['scale'], model_flags.CHANNEL_MODES[config['channels']])
  state = tf.train.get_checkpoint_state(folder)
  for checkpoint in state.all_model_checkpoint_paths:
    convert_checkpoint(os.path.join(folder, os.path.basename(checkpoint)), perm)
  files.write_json({**config, 'ps_order': espcn.PS_ORDER}, config_path)
  card = os.path.join(folder, checkpoints.CARD_FILE)
  if os.path.exists(card):
    add_card_line(card, f'- PS order: trained in the earlier order ({checkpoints.OLD_PS_ORDER}); layer 3\'s weights and '
                  f'bias were then permuted to `espcn.phase_shift`\'s order ({espcn.PS_ORDER}) by `python -m '
                  f'tools.convert_ps_order`, which leaves every output unchanged. A rerun of the recipe trains in '
                  f'the new order: the same quality is expected, not the same bytes.')


def add_card_line(card, line):
  """Adds `line` at the end of the card's first list (the model's facts), before its first blank line."""
  with open(card) as stream:
    lines = stream.read().split('\n')
  first_item = next(index for index, text in enumerate(lines) if text.startswith('- '))
  end = next((index for index in range(first_item, len(lines)) if not lines[index].strip()), len(lines))
  files.write_text('\n'.join(lines[:end] + [line] + lines[end:]), card)


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  model_dir = FLAGS.model_dir.rstrip('/')
  folders = [model_dir] + [os.path.join(model_dir, 'best')] * os.path.isdir(os.path.join(model_dir, 'best'))
  for folder in folders:
    config = checkpoints.read_config_file(folder)
    if config is None:
      raise files.InputError(f'{folder}: no {checkpoints.CONFIG_FILE}: not a model folder')
    if config.get('ps_order') == espcn.PS_ORDER:
      raise files.InputError(f'{folder}: already in the current PS order ({espcn.PS_ORDER})')
    if checkpoints.latest_checkpoint(folder) is None:
      raise files.InputError(f'{folder}: no checkpoint to convert')
  staged = f'{model_dir}.{os.getpid()}.converting'
  shutil.copytree(model_dir, staged)
  try:
    for folder in folders:
      convert_folder(folder.replace(model_dir, staged, 1))
    files.replace_folder(staged, model_dir)
  finally:
    shutil.rmtree(staged, ignore_errors=True)
  print(f'{model_dir}: layer 3 permuted to PS order {espcn.PS_ORDER} in {", ".join(folders)}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
