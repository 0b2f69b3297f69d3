"""TensorFlow's start-up for the scripts: TF1-style graph mode, oneDNN kernels, no start-up notes, threads.

Every script and tool imports TensorFlow through this module (`from runtime import tf`) before anything
else does, because two of its settings are read only when TensorFlow loads:

- TF_ENABLE_ONEDNN_OPTS=1: oneDNN's convolutions, the faster ones on AVX2-only CPUs, where TensorFlow leaves
  them off by default (docs/PERFORMANCE.md);
- TensorFlow's runtime prints notes on stderr when it loads (no CUDA driver, CPU features) whatever
  TF_CPP_MIN_LOG_LEVEL says, which would bury the scripts' one-line error messages. They are hidden; set
  TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's own log again after the import.
"""
import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
  """Closes file descriptor 2 for the block: C++ libraries' notes bypass Python's sys.stderr."""
  saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved_stderr, 2)
    os.close(saved_stderr)
    os.close(devnull)


def _import_tensorflow_quietly():
  """tensorflow.compat.v1 in graph mode, imported with stderr closed and its logger at ERROR."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
  try:
    with quiet_stderr():
      import tensorflow.compat.v1 as tf_v1  # pylint: disable=import-outside-toplevel
  except KeyboardInterrupt:  # Ctrl-C in the seconds TensorFlow takes to load: one line, not its import stack
    print('interrupted by SIGINT', file=sys.stderr)
    sys.exit(130)
  tf_v1.disable_eager_execution()
  tf_v1.get_logger().setLevel('ERROR')  # no "Restoring parameters from ..." notes on stderr
  return tf_v1


tf = _import_tensorflow_quietly()


def session_config(threads):
  """Session options: `threads` CPU threads per operation and operations at once (0: all cores)."""
  return tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
