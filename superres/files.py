"""Files and input errors: one-line errors without a traceback, atomic outputs, image lists, JSON and logs.

No TensorFlow here, so that scripts check their inputs before TensorFlow loads (and import_on_first_use,
which loads the modules that import it only when they are used).
"""
import contextlib
import glob
import importlib.abc
import importlib.util
import json
import os
import shutil
import signal
import sys


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


class InputError(Exception):
  """A problem with the user's input: reported as one line on stderr, without a traceback."""


class Terminated(KeyboardInterrupt):
  """SIGTERM (`kill`, a job scheduler, `docker stop`), raised as Ctrl-C's KeyboardInterrupt is: the same
  clean-up runs (atomic_output's temporary files removed, train.py's step saved), and exit_on_input_error
  reports it with exit code 143 instead of 130."""

  @staticmethod
  def raise_on_signal(signal_number, frame):
    del signal_number, frame  # Unused: a signal handler's signature.
    raise Terminated()


def exit_on_input_error(main):
  """Wraps an absl main so that an InputError ends the run with its message and exit code 1, and Ctrl-C or
  SIGTERM with one line and exit code 130 or 143 (128 + the signal's number, as shells report it), both
  without a traceback. An interrupt's message, if it carries one, is that line (train.py: how to resume)."""
  def wrapped(argv):
    previous = signal.signal(signal.SIGTERM, Terminated.raise_on_signal)
    try:
      return main(argv)
    except InputError as error:
      print(f'error: {error}', file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt as interrupt:
      number = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
      print(str(interrupt) or f'interrupted by {number.name}', file=sys.stderr)
      sys.exit(128 + number)
    finally:
      signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
  return wrapped


@contextlib.contextmanager
def atomic_output(path):
  """Yields a temporary path beside `path` and renames it to `path` only if the block succeeds.

  A crash, a full disk or Ctrl-C therefore never leaves a half-written file under the final name, and an
  earlier complete file stays untouched until the new one is complete.
  """
  temporary = f'{path}.{os.getpid()}.tmp'
  try:
    yield temporary
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def replace_folder(staged, destination):
  """Puts the complete folder `staged` in place of `destination` (which may not exist yet) by renames, so
  that a failure before this point leaves an earlier folder as it was (shipped models, exports)."""
  retired = f'{destination}.{os.getpid()}.old'
  if os.path.exists(destination):
    os.rename(destination, retired)
  os.rename(staged, destination)
  shutil.rmtree(retired, ignore_errors=True)


def ensure_writable_parent(path):
  """ensure_writable_dir for the folder that the file `path` (if given) goes into: checked before the work
  whose result it holds, not after."""
  if path:
    ensure_writable_dir(os.path.dirname(os.path.abspath(path)))


def ensure_writable_dir(directory):
  """Creates `directory` if needed and checks that files can be written into it."""
  try:
    os.makedirs(directory, exist_ok=True)
    probe = os.path.join(directory, f'.write-test-{os.getpid()}')
    with open(probe, 'w'):
      pass
    os.remove(probe)
  except OSError as error:
    raise InputError(f'{directory}: output folder is not writable ({error.strerror})') from None


def list_images(spec, extensions=IMAGE_EXTENSIONS):
  """Image files named by `spec`: a file, a folder (sorted, non-recursive), a glob pattern such as
  `BSD200/*0.png` (sorted; how part of a folder is held out for validation without copying it), or a
  comma-separated list of these. In folders and patterns, only names with `extensions` count."""
  kinds = ', '.join(extensions[:-1]) + ' or ' + extensions[-1]  # for error messages
  paths = []
  for item in (part.strip() for part in spec.split(',')):
    if not item:
      continue
    if os.path.isdir(item):
      names = sorted(name for name in os.listdir(item) if name.lower().endswith(extensions))
      if not names:
        raise InputError(f'{item}: folder has no {kinds} files')
      paths.extend(os.path.join(item, name) for name in names)
    elif os.path.isfile(item):  # before the pattern test: a file may be named 'photo[1].png'
      paths.append(item)
    elif any(wildcard in item for wildcard in '*?['):
      matches = sorted(path for path in glob.glob(item) if path.lower().endswith(extensions))
      if not matches:
        raise InputError(f'{item}: pattern matches no {kinds} file')
      paths.extend(matches)
    else:
      raise InputError(f'{item}: no such file or folder')
  if not paths:
    raise InputError(f'{spec!r}: no input images given')
  return paths


def output_stem(path):
  """What the outputs made from an input image are named after: its file name without the extension."""
  return os.path.splitext(os.path.basename(path))[0]


def parse_integers(values, flag, lowest, highest, what):
  """The integers of a list flag (its strings), each from `lowest` to `highest`, or an InputError naming the
  flag and `what` it takes."""
  try:
    numbers = [int(value) for value in values]
  except ValueError:
    numbers = []
  if not numbers or not all(lowest <= number <= highest for number in numbers):
    raise InputError(f'--{flag}={",".join(values)}: give {what} from {lowest} to {highest}')
  return numbers


def print_report(report, json_path=''):
  """Prints a report as aligned lines (format_report) and, with `json_path`, writes it there as JSON."""
  print(format_report(report))
  if json_path:
    write_json(report, json_path)


def format_report(report):
  """A JSON report as aligned 'key: value' lines, floats to three decimals."""
  width = max(len(key) for key in report)
  return '\n'.join(f'{key:>{width}}: {value:.3f}' if isinstance(value, float) else f'{key:>{width}}: {value}'
                   for key, value in report.items())


def write_text(text, path):
  """Writes a text file through a temporary file (see atomic_output)."""
  with atomic_output(path) as temporary:
    with open(temporary, 'w') as stream:
      stream.write(text)


def write_json(data, path):
  write_text(json.dumps(data, indent=2) + '\n', path)


def append_json_line(record, path):
  """Appends one JSON record as a line: a log that survives a killed run up to its last complete line."""
  with open(path, 'a') as stream:
    stream.write(json.dumps(record) + '\n')


def import_on_first_use(name, after=None):
  """The module `name`, loaded when one of its names is first used (importlib's LazyLoader), not now.

  With `after`, the module of that name is loaded just before it: espcn imports TensorFlow itself, and must
  do so after superres.runtime has set up TensorFlow's quiet start-up.
  """
  if name in sys.modules:
    return sys.modules[name]
  spec = importlib.util.find_spec(name)
  loader = spec.loader if after is None else _LoaderAfter(spec.loader, after)
  spec.loader = importlib.util.LazyLoader(loader)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


class _LoaderAfter(importlib.abc.Loader):
  """A module's own loader that loads the module `first` (eagerly, were it loaded on first use) before it."""

  def __init__(self, loader, first):
    self.loader, self.first = loader, first

  def __getattr__(self, name):  # the rest (get_source, ...) is the module's own loader's
    return getattr(self.loader, name)

  def create_module(self, spec):
    return self.loader.create_module(spec)

  def exec_module(self, module):
    getattr(importlib.import_module(self.first), '__name__')  # any attribute runs a lazy module's body
    self.loader.exec_module(module)
