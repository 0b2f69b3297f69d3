"""tools/get_data.py through its real code path: `python -m tools.get_data` as a user runs it, against an HTTP
server on 127.0.0.1 that this file starts (its own free port), serving tiny images made here, listed in a
manifest written here (--manifest). The server can answer wrong (a corrupt file, a 404), stall, or drop a
connection, and runs are stopped for real (SIGINT, SIGTERM, kill -9). What a user would see is checked by
replaying stderr as a terminal shows it (`screen`), so a line printed into the progress bar would show.

The last test fetches the real 359 files from ../shared/data/upstream, served the same way, and compares
them with ../shared/data pixel for pixel; it is skipped where that folder is absent.
"""
import collections
import contextlib
import errno
import functools
import hashlib
import http.server
import io
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from conftest import smooth_rgb
from tools import get_data

SHARED_DATA = REPO_ROOT.parent / 'shared' / 'data'
COMMIT = '0123456789abcdef0123456789abcdef01234567'
STALL_SECONDS = 10  # how long a stalling server waits before it hangs up: longer than any --timeout here
INTERRUPTED = 'interrupted: run the same command again to fetch the rest'
SUMMARY = re.compile(r'(\d+) files, (\d+\.\d) MB, (\d+) downloaded, (\d+) already here\n')


def png_bytes(image, **params):
  stream = io.BytesIO()
  image.save(stream, 'PNG', **params)
  return stream.getvalue()


@pytest.fixture(scope='module')
def upstream(tmp_path_factory):
  """Five images as an upstream repository holds them, three sets, and the manifest that names them.

  BMPs in RGB and L (their mode must be kept) and a renamed one (c_GT.bmp becomes c.png, as Set5's do);
  PNGs to be copied byte for byte, one of them (d.png, noise) larger than a download chunk, so that a run
  stopped halfway through it leaves a partly written download.
  """
  noise = np.random.default_rng(7).integers(0, 256, (256, 256, 3), dtype=np.uint8)
  sources = [('T91', 'a.png', 'Train/a.bmp', Image.fromarray(smooth_rgb(17, 23, seed=1))),
             ('T91', 'b.png', 'Train/b.bmp', Image.fromarray(smooth_rgb(11, 19, seed=2)).convert('L')),
             ('Set5', 'c.png', 'Test/Set5/c_GT.bmp', Image.fromarray(smooth_rgb(16, 16, seed=3))),
             ('BSD200', 'd.png', 'bsd200/d.png', Image.fromarray(noise)),
             ('BSD200', 'e.png', 'bsd200/e.png', Image.fromarray(smooth_rgb(20, 30, seed=5)))]
  served, images, rows = {}, {}, []
  for set_name, name, path, image in sources:
    upstream_path = f'tester/images/{COMMIT}/{path}'
    if path.endswith('.bmp'):
      stream = io.BytesIO()
      image.save(stream, 'BMP')
      served[upstream_path] = stream.getvalue()
    else:
      served[upstream_path] = png_bytes(image, compress_level=1)
    images[f'{set_name}/{name}'] = image
    pixels_sha256 = hashlib.sha256(image.tobytes()).hexdigest()
    rows.append([set_name, name, upstream_path, str(len(served[upstream_path])),
                 hashlib.sha256(served[upstream_path]).hexdigest(), image.mode,
                 f'{image.width}x{image.height}', pixels_sha256])
  manifest = tmp_path_factory.mktemp('get_data') / 'manifest.tsv'
  manifest.write_text('# A comment line, as the shipped manifest has.\n'
                      'set\tname\tupstream_path\tbytes\tsha256\tmode\tsize\tpixels_sha256\n' +
                      ''.join('\t'.join(row) + '\n' for row in rows))
  return types.SimpleNamespace(files=served, images=images, manifest=manifest,
                               path={f'{row[0]}/{row[1]}': row[2] for row in rows})


class Handler(http.server.BaseHTTPRequestHandler):
  """Serves the server's files, or misbehaves as its `misbehave` says for a path (see Upstream)."""

  def do_GET(self):  # pylint: disable=invalid-name
    path = self.path.lstrip('/')
    self.server.requests[path] += 1
    body = self.server.files.get(path)
    if body is None:
      self.send_error(404)
      return
    behaviour = self.server.misbehave.get(path)
    if behaviour == 'stall':
      self.stall()
      return
    self.send_response(200)
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    if behaviour in ('stall_mid', 'drop_once'):
      self.wfile.write(body[:len(body) // 2])
      self.wfile.flush()
      if behaviour == 'drop_once':
        del self.server.misbehave[path]  # the connection closes with half the bytes sent
      else:
        self.stall()
      return
    self.wfile.write(body)

  def stall(self):
    self.server.stalled.set()
    self.server.release.wait(STALL_SECONDS)

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    del format, args  # Quiet: the tests read the client's output, not the server's.


class Upstream(http.server.ThreadingHTTPServer):
  """An HTTP server on 127.0.0.1 serving `files` ({path: bytes}) from `url`. `misbehave` maps a path to how
  it is answered instead: 'stall' (no answer), 'stall_mid' (half the bytes, then silence) or 'drop_once'
  (half the bytes and a closed connection, the first time). `requests` counts the GETs of each path."""
  daemon_threads = True

  def __init__(self, files):
    super().__init__(('127.0.0.1', 0), Handler)
    self.files = dict(files)
    self.misbehave = {}
    self.requests = collections.Counter()
    self.stalled = threading.Event()
    self.release = threading.Event()
    self.url = f'http://127.0.0.1:{self.server_address[1]}/'


class QuietFiles(http.server.SimpleHTTPRequestHandler):
  """Serves a folder's files, without a log line per request."""

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    del format, args  # Unused.


@contextlib.contextmanager
def serving(server):
  """Runs `server` in a thread for a `with` block."""
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    yield server
  finally:
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(upstream):
  with serving(Upstream(upstream.files)) as running:
    yield running
    running.release.set()  # ends a stall, if any, before the server stops


def run_get_data(*args):
  """`python -m tools.get_data *args` from the repository root; stdout and stderr as text, their carriage
  returns kept (text mode would make them newlines, and the bar would look like lines)."""
  result = subprocess.run([sys.executable, '-m', 'tools.get_data', *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, timeout=300, check=False)
  return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                     result.stderr.decode())


@pytest.fixture
def fetch(upstream, tmp_path):
  """fetch('--flag', ...) runs tools.get_data with the test manifest into tmp_path/data."""
  return functools.partial(run_get_data, f'--manifest={upstream.manifest}', f'--data_dir={tmp_path / "data"}')


def screen(text):
  """The lines a terminal shows once `text` is written to it. tqdm draws its bar after a carriage return and
  clears it with spaces and a carriage return, so a line shows what follows its last carriage return."""
  shown = (line.rsplit('\r', 1)[-1].rstrip() for line in text.split('\n'))
  return [line for line in shown if line]


def assert_one_error_line(result, *names):
  """The run failed (exit code 1, no traceback, no summary) and the terminal shows one line, 'error: ...',
  that names each of `names`."""
  assert result.returncode == 1, result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  assert result.stdout == ''
  lines = screen(result.stderr)
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  for name in names:
    assert str(name) in lines[0], f'{name} not named in {lines[0]!r}'
  return lines[0]


def files_under(folder):
  """Every file under `folder`, as sorted paths relative to it ('T91/a.png'): leftovers show here."""
  return sorted(str(path.relative_to(folder)) for path in folder.rglob('*') if path.is_file())


def assert_fetched(data_dir, upstream, names, png_sources=True):
  """data_dir holds exactly the images `names` ('T91/a.png', ...), each with the source's pixels and mode;
  and with `png_sources`, the upstream PNGs byte for byte."""
  assert files_under(data_dir) == sorted(names)
  for name in names:
    with Image.open(data_dir / name) as image:
      assert image.format == 'PNG'
      assert image.mode == upstream.images[name].mode
      assert np.array_equal(np.asarray(image), np.asarray(upstream.images[name])), name
    if png_sources and upstream.path[name].endswith('.png'):
      assert (data_dir / name).read_bytes() == upstream.files[upstream.path[name]]


def summary(data_dir, names, downloaded):
  """The summary line of a run that ends with `names` in data_dir, `downloaded` of them fetched by it."""
  megabytes = sum((data_dir / name).stat().st_size for name in names) / 1e6
  return (f'{len(names)} files, {megabytes:.1f} MB, {downloaded} downloaded, '
          f'{len(names) - downloaded} already here\n')


def test_fetches_every_set_and_a_second_run_downloads_nothing(fetch, server, upstream, tmp_path):
  data_dir = tmp_path / 'data'
  first = fetch(f'--base_url={server.url}')
  assert first.returncode == 0, first.stderr
  assert screen(first.stderr) == []  # the bar is gone, nothing else was printed
  assert_fetched(data_dir, upstream, upstream.images)  # no pooch folder, no temporary file left
  assert first.stdout == summary(data_dir, upstream.images, 5)
  assert set(server.requests.values()) == {1}

  second = fetch(f'--base_url={server.url}')
  assert second.returncode == 0, second.stderr
  assert second.stdout == summary(data_dir, upstream.images, 0)  # '5 files, ... 0 downloaded, 5 already here'
  assert sum(server.requests.values()) == 5  # not one more request
  assert_fetched(data_dir, upstream, upstream.images)


def test_sets_fetches_only_those_and_an_unknown_set_is_one_line(fetch, server, upstream, tmp_path):
  data_dir = tmp_path / 'data'
  result = fetch(f'--base_url={server.url}', '--sets=Set5,BSD200')
  assert result.returncode == 0, result.stderr
  names = ['BSD200/d.png', 'BSD200/e.png', 'Set5/c.png']
  assert_fetched(data_dir, upstream, names)
  assert result.stdout == summary(data_dir, names, 3)
  assert sorted(server.requests) == sorted(upstream.path[name] for name in names)

  unknown = fetch(f'--base_url={server.url}', '--sets=T91,Set6')
  line = assert_one_error_line(unknown, '--sets=T91,Set6', 'no set named Set6', 'T91, Set5, BSD200')
  assert line == 'error: --sets=T91,Set6: no set named Set6; the sets are T91, Set5, BSD200'
  assert files_under(data_dir) == names


def test_a_corrupt_download_is_not_kept_and_ends_the_run_with_one_line(fetch, server, upstream, tmp_path):
  """b.bmp arrives with one byte changed (same length): tried twice (--retries=1), never kept; a.png,
  fetched before it, stays."""
  path = upstream.path['T91/b.png']
  corrupt = bytearray(upstream.files[path])
  corrupt[-1] ^= 0xFF
  server.files[path] = bytes(corrupt)
  result = fetch(f'--base_url={server.url}', '--retries=1')
  expected_sha256 = hashlib.sha256(upstream.files[path]).hexdigest()
  line = assert_one_error_line(result, tmp_path / 'data' / 'T91' / 'b.png', server.url + path, expected_sha256)
  assert line.endswith('; not kept')
  assert server.requests[path] == 2
  assert files_under(tmp_path / 'data') == ['T91/a.png']


def test_a_missing_file_is_one_line_with_the_way_out(fetch, server, upstream, tmp_path):
  path = upstream.path['Set5/c.png']
  del server.files[path]
  result = fetch(f'--base_url={server.url}', '--retries=0')
  line = assert_one_error_line(result, server.url + path, 'HTTP 404', '--base_url=', '--from=')
  assert line.startswith(f'error: {server.url + path}: HTTP 404 Not Found; ')
  assert files_under(tmp_path / 'data') == ['T91/a.png', 'T91/b.png']


def test_a_refused_connection_is_one_line_with_the_way_out(fetch, upstream):
  with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
  url = f'http://127.0.0.1:{port}/'
  result = fetch(f'--base_url={url}', '--retries=0')
  assert_one_error_line(result, url + upstream.path['T91/a.png'], 'cannot connect (Connection refused)',
                        '--base_url=', '--from=')


@pytest.mark.parametrize('behaviour', ['stall', 'stall_mid'])
def test_a_stalled_server_times_out_with_one_line(fetch, server, upstream, tmp_path, behaviour):
  """No answer at all, or half the file and then silence: --timeout=1 ends the run in about a second."""
  path = upstream.path['T91/a.png']
  server.misbehave[path] = behaviour
  start = time.monotonic()
  result = fetch(f'--base_url={server.url}', '--timeout=1', '--retries=0')
  assert time.monotonic() - start < STALL_SECONDS / 2
  assert_one_error_line(result, server.url + path, 'no answer within --timeout=1 s', '--base_url=', '--from=')
  assert files_under(tmp_path / 'data') == []


def test_a_lost_connection_is_tried_again(fetch, server, upstream, tmp_path):
  path = upstream.path['BSD200/d.png']
  server.misbehave[path] = 'drop_once'
  result = fetch(f'--base_url={server.url}')
  assert result.returncode == 0, result.stderr
  assert server.requests[path] == 2
  assert_fetched(tmp_path / 'data', upstream, upstream.images)


# Restores SIGINT's default action, then becomes the script: an exec keeps a default action, and Python then
# turns SIGINT into KeyboardInterrupt as in a terminal (this test may run as a background job, whose children
# inherit an ignored SIGINT).
WITH_SIGINT = ('import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); '
               'os.execv(sys.executable, [sys.executable, *sys.argv[1:]])')


def stopped_in_d_png(upstream, server, data_dir, stderr_path, how):
  """Starts a run, waits until it has half of d.png (after a, b and c are complete), and stops it `how`:
  a signal number, or 'kill -9'. Returns the process, ended."""
  path = upstream.path['BSD200/d.png']
  server.misbehave[path] = 'stall_mid'
  with open(stderr_path, 'w') as stderr:
    process = subprocess.Popen([sys.executable, '-c', WITH_SIGINT, '-m', 'tools.get_data',
                                f'--manifest={upstream.manifest}', f'--data_dir={data_dir}',
                                f'--base_url={server.url}'], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=stderr)
    try:
      assert server.stalled.wait(30), 'the run never asked for d.png'
      deadline = time.monotonic() + 10
      while not any(partial.stat().st_size for partial in data_dir.glob('.downloads/**/tmp*')):
        assert time.monotonic() < deadline, 'no partly written download'
        time.sleep(0.01)
      if how == 'kill -9':
        process.kill()
      else:
        process.send_signal(how)
      process.wait(timeout=30)
    finally:
      process.kill()
  del server.misbehave[path]
  return process


def test_a_killed_run_leaves_no_half_written_file_and_the_next_run_completes_it(fetch, server, upstream,
                                                                                tmp_path):
  """kill -9 halfway through d.png: what it leaves is pooch's partly written download (and here also, put
  by hand, a PNG half written beside its final name, which a kill in the middle of a conversion leaves);
  the next run keeps a, b and c, fetches d and e, and removes both leftovers."""
  data_dir = tmp_path / 'data'
  process = stopped_in_d_png(upstream, server, data_dir, tmp_path / 'stderr.txt', 'kill -9')
  assert process.returncode == -signal.SIGKILL
  left = files_under(data_dir)
  assert [name for name in left if not name.startswith('.downloads/')] == ['Set5/c.png', 'T91/a.png',
                                                                           'T91/b.png']
  assert len(left) == 4  # and one partly written download, under a temporary name of pooch's
  (data_dir / 'BSD200' / 'e.png.4242.tmp').write_bytes(b'\x89PNG\r\n\x1a\n')
  result = fetch(f'--base_url={server.url}')
  assert result.returncode == 0, result.stderr
  assert result.stdout == summary(data_dir, upstream.images, 2)
  assert server.requests[upstream.path['BSD200/d.png']] == 2
  assert_fetched(data_dir, upstream, upstream.images)


@pytest.mark.parametrize('signal_number, exit_code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=['SIGINT', 'SIGTERM'])
def test_ctrl_c_or_sigterm_leaves_only_complete_files_and_one_line(upstream, server, tmp_path, signal_number,
                                                                   exit_code):
  data_dir = tmp_path / 'data'
  process = stopped_in_d_png(upstream, server, data_dir, tmp_path / 'stderr.txt', signal_number)
  stderr = (tmp_path / 'stderr.txt').read_bytes().decode()
  assert process.returncode == exit_code, stderr
  assert 'Traceback' not in stderr
  assert screen(stderr) == [INTERRUPTED]
  assert files_under(data_dir) == ['Set5/c.png', 'T91/a.png', 'T91/b.png']  # pooch removed its download


def test_a_damaged_or_different_file_is_fetched_again_with_a_line_above_the_bar(fetch, server, upstream,
                                                                               tmp_path):
  data_dir = tmp_path / 'data'
  assert fetch(f'--base_url={server.url}').returncode == 0
  truncated = data_dir / 'T91' / 'a.png'
  truncated.write_bytes(truncated.read_bytes()[:100])
  Image.fromarray(smooth_rgb(16, 16, seed=99)).save(data_dir / 'Set5' / 'c.png')
  result = fetch(f'--base_url={server.url}')
  assert result.returncode == 0, result.stderr
  assert screen(result.stderr) == [f'{truncated}: not the image the manifest names; fetching it again',
                                   f'{data_dir / "Set5" / "c.png"}: not the image the manifest names; '
                                   'fetching it again']
  assert result.stdout == summary(data_dir, upstream.images, 2)
  assert_fetched(data_dir, upstream, upstream.images)


def test_a_failed_write_leaves_no_file_under_its_final_name(upstream, server, tmp_path, monkeypatch):
  """The disk fills up while a.bmp's PNG is written: the half-written PNG is not left, under any name."""
  def save_half(image, path, format=None, **params):  # pylint: disable=redefined-builtin
    del image, format, params  # Unused: Image.save's signature.
    with open(path, 'wb') as stream:
      stream.write(b'\x89PNG\r\n\x1a\n')
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(Image.Image, 'save', save_half)
  data_dir = tmp_path / 'data'
  with pytest.raises(OSError, match='No space left'):
    get_data.get_data(get_data.read_manifest(str(upstream.manifest), ['T91']), str(data_dir), server.url)
  assert [name for name in files_under(data_dir) if not name.startswith('.downloads/')] == []


@pytest.fixture
def folders(upstream, tmp_path):
  """The test's images in both layouts that --from takes: upstream's (OWNER/REPO/COMMIT/PATH, the served
  bytes) and data's (<set>/<name>.png, written by another PNG encoder setting: other bytes, same pixels)."""
  upstream_layout, png_layout = tmp_path / 'upstream', tmp_path / 'pngs'
  for path, body in upstream.files.items():
    (upstream_layout / path).parent.mkdir(parents=True, exist_ok=True)
    (upstream_layout / path).write_bytes(body)
  for name, image in upstream.images.items():
    (png_layout / name).parent.mkdir(parents=True, exist_ok=True)
    (png_layout / name).write_bytes(png_bytes(image, compress_level=0))
  return types.SimpleNamespace(upstream=upstream_layout, pngs=png_layout)


@pytest.mark.parametrize('layout', ['upstream', 'pngs'])
def test_from_a_folder_in_either_layout(fetch, upstream, folders, tmp_path, layout):
  data_dir = tmp_path / 'data'
  result = fetch(f'--from={getattr(folders, layout)}')  # no --base_url: GitHub is never asked
  assert result.returncode == 0, result.stderr
  assert result.stdout == summary(data_dir, upstream.images, 5)
  assert_fetched(data_dir, upstream, upstream.images, png_sources=layout == 'upstream')
  if layout == 'pngs':  # copied as they are
    assert all((data_dir / name).read_bytes() == (folders.pngs / name).read_bytes() for name in upstream.images)


def test_from_checks_every_file(fetch, upstream, folders, tmp_path):
  """A PNG copy with other pixels, an upstream file with other bytes, a missing file: each one line, not
  kept; and --from with --base_url is refused."""
  data_dir = tmp_path / 'data'
  Image.fromarray(smooth_rgb(17, 23, seed=50)).save(folders.pngs / 'T91' / 'a.png')
  wrong_pixels = fetch(f'--from={folders.pngs}', '--sets=T91')
  assert_one_error_line(wrong_pixels, data_dir / 'T91' / 'a.png', folders.pngs / 'T91' / 'a.png',
                        'RGB 23x17', hashlib.sha256(upstream.images['T91/a.png'].tobytes()).hexdigest())

  path = upstream.path['T91/b.png']
  (folders.upstream / path).write_bytes(upstream.files[path][:-1] + bytes([upstream.files[path][-1] ^ 0xFF]))
  wrong_bytes = fetch(f'--from={folders.upstream}', '--sets=T91')
  assert_one_error_line(wrong_bytes, data_dir / 'T91' / 'b.png', folders.upstream / path,
                        hashlib.sha256(upstream.files[path]).hexdigest())
  assert files_under(data_dir) == ['T91/a.png']

  (folders.pngs / 'Set5' / 'c.png').unlink()
  missing = fetch(f'--from={folders.pngs}', '--sets=Set5')
  assert_one_error_line(missing, f'--from={folders.pngs}', 'Set5/c.png', upstream.path['Set5/c.png'])

  both = fetch(f'--from={folders.pngs}', '--base_url=http://127.0.0.1:1/')
  assert_one_error_line(both, '--from', '--base_url')


@pytest.mark.slow
def test_fetches_the_real_data_from_a_local_copy_of_upstream(tmp_path):
  """All 359 files of ../shared/data/upstream (GitHub's bytes) served on 127.0.0.1: the result is
  ../shared/data, pixel for pixel and mode for mode; and --from=../shared/data gives its files byte for byte."""
  if not (SHARED_DATA / 'upstream' / 'MANIFEST.tsv').exists():
    pytest.skip(f'no {SHARED_DATA / "upstream"} here (CI has it)')
  handler = functools.partial(QuietFiles, directory=str(SHARED_DATA / 'upstream'))
  with serving(http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)) as server:
    result = run_get_data(f'--base_url=http://127.0.0.1:{server.server_address[1]}/',
                        f'--data_dir={tmp_path / "data"}')
  assert result.returncode == 0, result.stderr
  match = SUMMARY.fullmatch(result.stdout)
  assert match and match.group(1, 3, 4) == ('359', '359', '0'), result.stdout
  names = files_under(tmp_path / 'data')
  assert names == sorted(str(path.relative_to(SHARED_DATA)) for path in SHARED_DATA.glob('*/*.png')
                         if path.parent.name != 'upstream')
  for name in names:
    with Image.open(tmp_path / 'data' / name) as fetched, Image.open(SHARED_DATA / name) as shared:
      assert fetched.mode == shared.mode, name
      assert np.array_equal(np.asarray(fetched), np.asarray(shared)), name

  copied = run_get_data(f'--from={SHARED_DATA}', f'--data_dir={tmp_path / "copy"}')
  assert copied.returncode == 0, copied.stderr
  for name in names:
    assert (tmp_path / 'copy' / name).read_bytes() == (SHARED_DATA / name).read_bytes(), name
