"""Training throughput from a streamed patch file, as a ratio to the same file read into memory.

train.py reads a patch file larger than --max_memory in shuffled blocks of HDF5 chunks (StreamedPatches)
instead of all at once (InMemoryPatches). This command trains one graph on the same file both ways, in
alternating rounds of --steps steps in one process (so that a busy machine slows both alike), and reports
the median patches per second of each and their ratio:

  python -m tools.benchmark_streaming --data=checkpoint/t91_bsd200_y_x3_s7.h5 --max_memory=64
"""
import os
import time

import numpy as np
from absl import app
from absl import flags
from tqdm import tqdm

from superres import files
from superres import model_flags
from superres import patches
from superres import training
from superres.runtime import session_config
from superres.runtime import tf

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('data', None, 'A patch file from patches.py.')
  flags.DEFINE_float('max_memory', 64, 'Streaming budget in MiB (train.py --max_memory); must be smaller '
                     'than the file for it to be streamed.')
  flags.DEFINE_integer('steps', 500, 'Training steps per round and reader.', lower_bound=1)
  flags.DEFINE_integer('rounds', 5, 'Alternating rounds (in memory, then streamed).', lower_bound=1)
  flags.DEFINE_integer('batch_size', 16, 'Patches per step.', lower_bound=1)
  flags.DEFINE_integer('threads', 0, 'CPU threads (0: all).', lower_bound=0)
  flags.DEFINE_string('json', '', 'Also write the report to this JSON file.')
  flags.mark_flag_as_required('data')


def patches_per_second(session, graph, batch_iterator, steps, batch_size):
  """Trains `steps` steps on batches from `batch_iterator`, feeding included."""
  start = time.perf_counter()
  for _ in range(steps):
    lr_batch, hr_batch = next(batch_iterator)
    session.run(graph.train_op, {graph.lr_patches: lr_batch, graph.hr_patches: hr_batch})
  return steps * batch_size / (time.perf_counter() - start)


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  files.ensure_writable_parent(FLAGS.json)
  attributes = patches.read_settings(FLAGS.data)
  readers = {'in_memory': patches.open_patches(FLAGS.data, attributes, 2**62),
             'streamed': patches.open_patches(FLAGS.data, attributes, int(FLAGS.max_memory * 2**20))}
  if not isinstance(readers['streamed'], patches.StreamedPatches):
    raise files.InputError(f'{FLAGS.data}: fits in --max_memory={FLAGS.max_memory} MiB, so it would not be '
                           f'streamed; give a smaller budget')
  graph = training.build_training_graph(attributes['scale'], model_flags.CHANNEL_MODES[attributes['channels']],
                                     'none', 1e-4, 1.0)
  batch_iterators = {name: training.batches(reader, FLAGS.batch_size, seed=0, first_step=0, augment_batches=True)
                     for name, reader in readers.items()}
  speeds = {name: [] for name in readers}
  with tf.Session(config=session_config(FLAGS.threads)) as session:
    session.run(tf.global_variables_initializer())
    for batch_iterator in batch_iterators.values():  # warm-up: kernel selection, first reads
      patches_per_second(session, graph, batch_iterator, 50, FLAGS.batch_size)
    for _ in tqdm(range(FLAGS.rounds), desc='rounds', leave=False):
      for name, batch_iterator in batch_iterators.items():
        speeds[name].append(patches_per_second(session, graph, batch_iterator, FLAGS.steps, FLAGS.batch_size))
  medians = {name: float(np.median(values)) for name, values in speeds.items()}
  report = {'data': FLAGS.data, 'file_mib': os.path.getsize(FLAGS.data) / 2**20,
            'max_memory_mib': FLAGS.max_memory,
            'batch_size': FLAGS.batch_size, 'steps_per_round': FLAGS.steps, 'rounds': FLAGS.rounds,
            'in_memory_patches_per_s': medians['in_memory'], 'streamed_patches_per_s': medians['streamed'],
            'streamed_to_in_memory': medians['streamed'] / medians['in_memory']}
  files.print_report(report, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
