"""Downloads the data sets into data/<set>/<name>.png, every file checked against the repository's manifest.

  python -m tools.get_data                                     # T91, Set5, Set14, General100, BSD200
  python -m tools.get_data --sets=T91,Set5                     # only these
  python -m tools.get_data --base_url=http://127.0.0.1:8000/   # a mirror of GitHub's raw file host
  python -m tools.get_data --from=DIR                          # a folder: no network

The images are files of public GitHub repositories at pinned commits. tools/data_manifest.tsv names each one
(OWNER/REPO/COMMIT/PATH, as https://raw.githubusercontent.com/ serves it) with its SHA-256, and the final
image's mode, size and SHA-256 of its decoded pixels. A download is kept only if its SHA-256 is the
manifest's and its decoded pixels are the manifest's; then a PNG is copied as it is and a BMP becomes a PNG
(Pillow, mode kept, optimize=True: with the pinned Pillow, byte for byte the PNGs the manifest was made from).
A file gets its final name by a rename once complete, so an interrupted run (Ctrl-C, a lost connection,
kill -9) leaves no half-written file under a final name, and the next run fetches only what is missing: a
file already in data/ with the manifest's pixels is kept.

Downloads go through pooch: its registry of hashes, base URL, retries and HTTP downloader with a timeout, and
its check of a download's hash before the file gets a name in pooch's folder (data/.downloads/, removed at
the end of a complete run). What pooch cannot do is done here: the pixels check, the BMP conversion, and
--from. Pooch has no downloader for a local folder, so --from's upstream layout goes through pooch with a
downloader that copies; --from's PNG copies have no upstream bytes to hash, so only their pixels are checked.
"""
import collections
import csv
import glob
import hashlib
import os
import re
import shutil
import sys

from absl import app
from absl import flags
import pooch
from PIL import Image
import requests
from tqdm import tqdm

from superres import files

FLAGS = flags.FLAGS

MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data_manifest.tsv')
GITHUB_RAW = 'https://raw.githubusercontent.com/'
DOWNLOADS = '.downloads'  # pooch's folder under --data_dir: checked downloads on their way to data/<set>/
WAY_OUT = 'to fetch the files from elsewhere, use --base_url=URL (a mirror) or --from=DIR (a folder)'

Entry = collections.namedtuple('Entry', 'set name upstream_path bytes sha256 mode size pixels_sha256')


def define_flags():
  """The command line, defined only when run as a script so that tests can import this file."""
  flags.DEFINE_list('sets', [], 'Data sets to fetch, comma-separated, e.g. T91,Set5. Default: all of them, '
                    'T91, Set5, Set14, General100 and BSD200 (359 files, 84 MB).')
  flags.DEFINE_string('data_dir', 'data', 'Folder to fetch into: <data_dir>/<set>/<name>.png.')
  flags.DEFINE_string('base_url', GITHUB_RAW, 'Where to download from: each file is <base_url>OWNER/REPO/'
                      'COMMIT/PATH, as GitHub serves it. A mirror, e.g. a folder of that layout served by '
                      '`python -m http.server --directory DIR 8000` with --base_url=http://127.0.0.1:8000/.')
  flags.DEFINE_string('from', '', 'Copy from this folder instead of downloading (offline machines, CI): '
                      'either DIR/<set>/<name>.png (checked by their pixels), or DIR/OWNER/REPO/COMMIT/PATH '
                      '(checked by SHA-256).')
  flags.DEFINE_float('timeout', 30, 'Seconds to wait for a connection, and for the next bytes of a download.',
                     lower_bound=0.1)
  flags.DEFINE_integer('retries', 2, 'Times to try a failed download again (a lost connection, a wrong '
                       'hash), after 1 s, 2 s, ...', lower_bound=0)
  flags.DEFINE_string('manifest', MANIFEST, 'The files to fetch and their hashes, tab-separated.')


def read_manifest(path, sets=()):
  """The manifest's entries of `sets` (all if empty), in the manifest's order. '#' lines are comments."""
  try:
    with open(path, newline='', encoding='utf-8') as stream:
      rows = csv.DictReader((line for line in stream if not line.startswith('#')), delimiter='\t')
      entries = [Entry(**row) for row in rows]
  except OSError as error:
    raise files.InputError(f'--manifest={path}: cannot be read ({error.strerror})') from None
  known = list(dict.fromkeys(entry.set for entry in entries))
  unknown = [name for name in sets if name not in known]
  if unknown:
    raise files.InputError(f'--sets={",".join(sets)}: no set named {", ".join(unknown)}; '
                           f'the sets are {", ".join(known)}')
  return [entry for entry in entries if not sets or entry.set in sets]


def decode(path):
  """The image in the file `path`, fully decoded; InputError if it is not a readable image."""
  try:
    with Image.open(path) as image:
      image.load()
      return image
  except Exception as error:  # pylint: disable=broad-except
    # Pillow raises many kinds on a damaged file (OSError, SyntaxError, ValueError, EOFError ...).
    raise files.InputError(f'{path}: not a readable image ({type(error).__name__}: {error})') from None


def pixels(image):
  """(mode, 'WxH', SHA-256 of the decoded pixels): what the manifest says of a final image, the same
  whichever PNG encoder wrote the file."""
  return image.mode, f'{image.width}x{image.height}', hashlib.sha256(image.tobytes()).hexdigest()


def expected_pixels(entry):
  """pixels() of the entry's image, as the manifest records it."""
  return entry.mode, entry.size, entry.pixels_sha256


def is_here(entry, final):
  """Whether the file `final` holds the entry's image: checked by its pixels, so that a damaged or
  different file under that name is fetched again."""
  try:
    return pixels(decode(final)) == expected_pixels(entry)
  except files.InputError:
    return False


def store(original, source, entry, final):
  """Writes the entry's image to `final` from the file `original` (from `source`, a URL or path for the
  messages), if its decoded pixels are the manifest's: a PNG as it is, anything else converted to PNG."""
  image = decode(original)
  if pixels(image) != expected_pixels(entry):
    raise files.InputError(f'{final}: {source} is not the image the manifest names (expected {entry.mode} '
                           f'{entry.size}, pixels sha256 {entry.pixels_sha256}); not kept')
  with files.atomic_output(final) as temporary:
    if image.format == 'PNG':
      shutil.copyfile(original, temporary)
    else:
      image.save(temporary, 'PNG', optimize=True)


def copy_file(url, output_file, pooch_instance):
  """A pooch downloader for a local folder (--from's upstream layout), where `url` is a path."""
  del pooch_instance  # Unused: a downloader's signature.
  shutil.copyfile(url, output_file)


class Originals:
  """The upstream files, through pooch: fetched from `base_url` by `downloader` (retried `retries` times)
  into the folder `downloads`, where pooch names a file only once its SHA-256 is the manifest's."""

  def __init__(self, entries, downloads, base_url, downloader, retries=0, timeout=None):
    self.downloader = downloader
    self.timeout = timeout
    self.pooch = pooch.create(path=downloads, base_url=base_url, retry_if_failed=retries,
                              registry={entry.upstream_path: f'sha256:{entry.sha256}' for entry in entries})

  def fetch(self, entry, final):
    """(path of the checked original file, its URL); InputError in one line if it cannot be had."""
    url = self.pooch.get_url(entry.upstream_path)
    try:
      return self.pooch.fetch(entry.upstream_path, downloader=self.downloader), url
    except ValueError:  # pooch's hash check failed, and pooch deleted the download
      raise files.InputError(f'{final}: {url} is not the file the manifest names (expected sha256 '
                             f'{entry.sha256}, {entry.bytes} bytes); not kept') from None
    except requests.exceptions.RequestException as error:
      raise files.InputError(f'{url}: {self.failure(error)}; {WAY_OUT}') from None

  def failure(self, error):
    """What went wrong with a download, in a few words: requests' own message is a long chain."""
    if isinstance(error, requests.exceptions.HTTPError):
      return f'HTTP {error.response.status_code} {error.response.reason}'
    if isinstance(error, requests.exceptions.Timeout) or 'timed out' in str(error):  # mid-file: ConnectionError
      return f'no answer within --timeout={self.timeout:g} s'
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
      return 'the connection broke off mid-file'
    reason = re.search(r'\[Errno -?\d+\] ([^\'")]+)', str(error))  # 'Connection refused', a DNS failure ...
    return f'cannot connect ({reason.group(1) if reason else type(error).__name__})'


def remove_leftovers(data_dir, entries):
  """Deletes the temporary files that a killed run (kill -9, a power cut) left beside the final names;
  pooch's are in its folder, removed at the end of a complete run."""
  for name in dict.fromkeys(entry.set for entry in entries):
    for leftover in glob.glob(os.path.join(glob.escape(os.path.join(data_dir, name)), '*.png.*.tmp')):
      os.remove(leftover)


def get_data(entries, data_dir, base_url=GITHUB_RAW, from_dir='', timeout=30.0, retries=2):
  """Fetches the manifest's `entries` into data_dir/<set>/<name>, from `base_url` or the folder `from_dir`;
  returns the summary line. Stops at the first file that cannot be had (InputError)."""
  files.ensure_writable_dir(data_dir)
  remove_leftovers(data_dir, entries)
  downloads = os.path.join(data_dir, DOWNLOADS)
  if from_dir:
    if not os.path.isdir(from_dir):
      raise files.InputError(f'--from={from_dir}: no such folder')
    originals = Originals(entries, downloads, os.path.abspath(from_dir), copy_file)
  else:
    downloader = pooch.HTTPDownloader(timeout=timeout, chunk_size=1 << 16)
    originals = Originals(entries, downloads, base_url, downloader, retries, timeout)
  fetched = 0
  with tqdm(entries, unit='file', leave=False, dynamic_ncols=True) as progress:
    for entry in progress:
      progress.set_description(entry.set, refresh=False)
      final = os.path.join(data_dir, entry.set, entry.name)
      if os.path.exists(final):
        if is_here(entry, final):
          continue
        tqdm.write(f'{final}: not the image the manifest names; fetching it again', file=sys.stderr)
      os.makedirs(os.path.dirname(final), exist_ok=True)
      copy = os.path.join(from_dir, entry.set, entry.name)
      if from_dir and os.path.isfile(copy):
        store(copy, copy, entry, final)
      elif from_dir and not os.path.isfile(os.path.join(from_dir, entry.upstream_path)):
        raise files.InputError(f'--from={from_dir}: has neither {entry.set}/{entry.name} nor '
                               f'{entry.upstream_path}')
      else:
        original, url = originals.fetch(entry, final)
        store(original, url, entry, final)
        os.remove(original)
      fetched += 1
  shutil.rmtree(downloads, ignore_errors=True)
  megabytes = sum(os.path.getsize(os.path.join(data_dir, entry.set, entry.name)) for entry in entries) / 1e6
  return (f'{len(entries)} files, {megabytes:.1f} MB, {fetched} downloaded, '
          f'{len(entries) - fetched} already here')


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  from_dir = FLAGS['from'].value  # `from` is a Python keyword: FLAGS.from would not parse
  if from_dir and FLAGS['base_url'].present:
    raise files.InputError('--from and --base_url: give one or the other')
  pooch.get_logger().setLevel('WARNING')  # its line per download would break the progress bar
  entries = read_manifest(FLAGS.manifest, FLAGS.sets)
  try:
    summary = get_data(entries, FLAGS.data_dir, FLAGS.base_url, from_dir, FLAGS.timeout, FLAGS.retries)
  except KeyboardInterrupt as interrupt:
    raise type(interrupt)('interrupted: run the same command again to fetch the rest') from None
  print(summary)


if __name__ == '__main__':
  define_flags()
  app.run(main)
