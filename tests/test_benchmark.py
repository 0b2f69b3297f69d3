"""generate.py --benchmark: each figure is a measurement of what it names, and a reduced-precision model is
compared with a float32 twin of itself.

The benchmark runs in-process. Its timed parts are made to take known times (a sleep on top of the real
work), so that each reported time can be checked against what it must at least be, and at most, without
recomputing it the way benchmark.py does; what was run is checked from the graphs the sessions ran.
"""
import contextlib
import os
import time

import numpy as np
import pytest
from PIL import Image

from superres import benchmark
from superres import image_files
from superres import inference
from superres.runtime import tf

# Keys README and users' scripts read (generate.py --benchmark --json): a contract, whatever the values.
DOCUMENTED_KEYS = {'size', 'scale', 'channels', 'precision', 'checkpoint', 'runs', 'gflop_per_frame',
                   'model_ms_median', 'model_ms_min', 'model_ms_max', 'fps', 'gflops', 'peak_gflops',
                   'fraction_of_peak', 'end_to_end_ms_median', 'end_to_end_ratio', 'decode_ms_median',
                   'reconstruction_ms_median', 'png_encode_ms_median', 'pillow_png_encode_ms_median',
                   'png_bytes', 'pillow_png_bytes'}
REDUCED_PRECISION_KEYS = {'float32_model_ms_median', 'speedup_over_float32'}
SCALE = 3
OUTPUT_WIDTH, OUTPUT_HEIGHT = 192, 120  # LR 64 x 40: a GFLOP count that rounding to 3 decimals keeps
RUNS = 3
SLACK = 0.15  # seconds a timed call may take beyond its sleep on a busy shared machine


def sleeping_before(seconds, function):
  """`function`, made to take at least `seconds` longer."""
  def slowed(*args, **kwargs):
    time.sleep(seconds)
    return function(*args, **kwargs)
  return slowed


def assert_between(value, low, high, name):
  assert low <= value <= high, f'{name} = {value}, expected in [{low}, {high}]'


def network_convolutions(graph):
  """The network's Conv2D ops (layer1-3; not the bicubic chroma convolution of 'y' mode), in order."""
  return [op for op in graph.get_operations() if op.type == 'Conv2D' and op.name.startswith('layer')]


def flop_count_of_graph(graph, lr_height, lr_width):
  """FLOP of one pass, counted from the convolutions in the graph: 2 per multiply-add, each of the LR
  pixels times the kernel's height x width x input channels x output channels."""
  return sum(2 * lr_height * lr_width * int(np.prod(op.inputs[1].shape.as_list()))
             for op in network_convolutions(graph))


def test_time_runs_times_each_function_alone_and_takes_turns():
  """Each function's times are its own calls (not a running total, not another's), after the warm-up
  calls, and the functions are called in turn, run by run."""
  calls = []

  def sleeper(name, seconds):
    def sleep():
      calls.append(name)
      time.sleep(seconds)
    return sleep

  short, long = benchmark.time_runs([sleeper('short', 0.02), sleeper('long', 0.05)], runs=4, warmup=2)
  assert calls == ['short', 'long'] * (2 + 4)
  assert len(short) == len(long) == 4
  for seconds in short:
    assert_between(seconds, 0.02, 0.02 + SLACK, 'short')
  for seconds in long:
    assert_between(seconds, 0.05, 0.05 + SLACK, 'long')


def test_network_gflop_is_the_count_of_the_graphs_convolutions():
  for channels, num_channels in (('y', 1), ('rgb', 3)):
    model = inference.Upscaler.with_random_weights(SCALE, channels)
    expected = flop_count_of_graph(model.session.graph, 40, 64) / 1e9
    model.session.close()
    assert benchmark.network_gflop(40, 64, SCALE, num_channels) == pytest.approx(expected, rel=1e-12)


@contextlib.contextmanager
def sleeping_matmul(seconds):
  """Stands in for benchmark.matmul_run: a 'matmul' that takes `seconds`."""
  yield lambda: time.sleep(seconds)


@pytest.fixture
def timed_model(monkeypatch):
  """A random-weights y x3 Upscaler whose timed parts take known extra times: the network 20 ms, the
  reconstruction 40 ms, decoding 30 ms, this repo's PNG encoder 50 ms, Pillow's 70 ms, the matmul 60 ms."""
  sleeps = {'network': 0.02, 'reconstruction': 0.04, 'decode': 0.03, 'encode': 0.05, 'pillow_encode': 0.07,
            'matmul': 0.06}
  model = inference.Upscaler.with_random_weights(SCALE, 'y')
  model.network = sleeping_before(sleeps['network'], model.network)
  model.upscale = sleeping_before(sleeps['reconstruction'], model.upscale)
  monkeypatch.setattr(image_files, 'load_image', sleeping_before(sleeps['decode'], image_files.load_image))
  monkeypatch.setattr(image_files, 'save_png', sleeping_before(sleeps['encode'], image_files.save_png))
  monkeypatch.setattr(Image.Image, 'save', sleeping_before(sleeps['pillow_encode'], Image.Image.save))
  monkeypatch.setattr(benchmark, 'matmul_run', lambda: sleeping_matmul(sleeps['matmul']))
  yield model, sleeps
  model.session.close()


def test_benchmark_reports_every_documented_figure_as_a_measurement_of_what_it_names(tmp_path, timed_model):
  model, sleeps = timed_model
  report = benchmark.benchmark(model, (OUTPUT_WIDTH, OUTPUT_HEIGHT), RUNS, str(tmp_path))
  assert DOCUMENTED_KEYS <= set(report) and not REDUCED_PRECISION_KEYS & set(report)
  assert {key: report[key] for key in ('size', 'scale', 'channels', 'precision', 'checkpoint', 'runs')} == {
      'size': f'{OUTPUT_WIDTH}x{OUTPUT_HEIGHT}', 'scale': SCALE, 'channels': 'y', 'precision': 'float32',
      'checkpoint': 'random weights', 'runs': RUNS}

  # Times, in ms: each at least its part's sleep. The whole job decodes, reconstructs and encodes.
  network_ms, end_to_end_ms = 1e3 * sleeps['network'], 1e3 * (sleeps['decode'] + sleeps['reconstruction']
                                                               + sleeps['encode'])
  slack_ms = 1e3 * SLACK
  assert_between(report['model_ms_min'], network_ms, report['model_ms_median'], 'model_ms_min')
  assert_between(report['model_ms_median'], network_ms, network_ms + slack_ms, 'model_ms_median')
  assert_between(report['model_ms_max'], report['model_ms_median'], network_ms + 3 * slack_ms, 'model_ms_max')
  for key, part in (('decode_ms_median', 'decode'), ('reconstruction_ms_median', 'reconstruction'),
                    ('png_encode_ms_median', 'encode'), ('pillow_png_encode_ms_median', 'pillow_encode')):
    assert_between(report[key], 1e3 * sleeps[part], 1e3 * sleeps[part] + slack_ms, key)
  assert_between(report['end_to_end_ms_median'], end_to_end_ms, end_to_end_ms + slack_ms, 'end_to_end_ms_median')
  assert_between(report['end_to_end_ratio'], end_to_end_ms / (network_ms + slack_ms),
                 (end_to_end_ms + slack_ms) / network_ms, 'end_to_end_ratio')
  assert_between(report['fps'], 1e3 / (network_ms + slack_ms), 1e3 / network_ms, 'fps')

  # Work: the FLOP of the graph's convolutions on the LR frame, and the matmul's 2 n^3 FLOP in its time.
  gflop = flop_count_of_graph(model.session.graph, OUTPUT_HEIGHT // SCALE, OUTPUT_WIDTH // SCALE) / 1e9
  assert report['gflop_per_frame'] == pytest.approx(gflop, abs=5e-4)  # (rounded to 3 decimals)
  assert_between(report['gflops'], gflop / (network_ms + slack_ms) * 1e3, gflop / network_ms * 1e3, 'gflops')
  matmul_gflop = 2 * benchmark.MATMUL_SIZE ** 3 / 1e9
  peak_low, peak_high = matmul_gflop / (sleeps['matmul'] + SLACK), matmul_gflop / sleeps['matmul']
  assert_between(report['peak_gflops'], peak_low, peak_high, 'peak_gflops')
  assert_between(report['fraction_of_peak'], report['gflops'] / peak_high, report['gflops'] / peak_low,
                 'fraction_of_peak')

  # Files: the frame written is the LR frame of --size; the byte counts are those of the result's PNGs.
  with Image.open(tmp_path / 'frame.png') as frame:
    assert frame.size == (OUTPUT_WIDTH // SCALE, OUTPUT_HEIGHT // SCALE)
  assert report['pillow_png_bytes'] == os.path.getsize(tmp_path / 'frame_sr.png')  # Pillow's, written last
  with Image.open(tmp_path / 'frame_sr.png') as result:
    assert result.size == (OUTPUT_WIDTH, OUTPUT_HEIGHT)
    image_files.save_png(result, tmp_path / 'ours.png')
  assert report['png_bytes'] == os.path.getsize(tmp_path / 'ours.png')
  assert report['png_bytes'] != report['pillow_png_bytes']


def convolution_types(graph):
  return [op.get_attr('T') for op in network_convolutions(graph)]


def test_a_reduced_precision_benchmark_times_its_float32_twin_in_turn(tmp_path, monkeypatch):
  """The baseline of the speed-up is the float32 model: the timed function of float32_model_ms_median
  runs a graph whose network convolutions are all float32, the model's runs layer 2 in bfloat16."""
  model = inference.Upscaler.with_random_weights(SCALE, 'y', precision='bfloat16')
  twin = inference.Upscaler.with_random_weights(SCALE, 'y')
  twin.network = sleeping_before(0.06, twin.network)
  graphs_run = []  # the graphs that sessions run while a timed function is being watched
  real_run = tf.Session.run

  def recording_run(session, *args, **kwargs):
    graphs_run.append(session.graph)
    return real_run(session, *args, **kwargs)

  def graphs_run_by(function):
    del graphs_run[:]
    function()
    return set(graphs_run)

  real_time_runs = benchmark.time_runs
  timed_graphs = {}

  def time_runs(functions, runs):
    """Watches one call of each function first: the matmul, the model and the twin (benchmark's order)."""
    timed_graphs['model'], timed_graphs['twin'] = (graphs_run_by(functions[index]) for index in (1, -1))
    return real_time_runs(functions, runs)

  monkeypatch.setattr(tf.Session, 'run', recording_run)
  monkeypatch.setattr(benchmark, 'time_runs', time_runs)
  monkeypatch.setattr(benchmark, 'matmul_run', lambda: sleeping_matmul(0.01))
  try:
    report = benchmark.benchmark(model, (OUTPUT_WIDTH, OUTPUT_HEIGHT), RUNS, str(tmp_path), float32_twin=twin)
  finally:
    model.session.close()
    twin.session.close()
  assert DOCUMENTED_KEYS | REDUCED_PRECISION_KEYS <= set(report)
  assert report['precision'] == 'bfloat16'
  assert [convolution_types(graph) for graph in timed_graphs['model']] == [[tf.float32, tf.bfloat16, tf.float32]]
  assert [convolution_types(graph) for graph in timed_graphs['twin']] == [[tf.float32] * 3]
  assert_between(report['float32_model_ms_median'], 60, 60 + 1e3 * SLACK, 'float32_model_ms_median')
  assert report['model_ms_median'] < 60  # (no sleep: a 64 x 40 frame takes a few ms)
  assert report['speedup_over_float32'] == pytest.approx(report['float32_model_ms_median']
                                                         / report['model_ms_median'])


@pytest.mark.parametrize('precision', ['float32', 'bfloat16'])
def test_generate_benchmark_times_the_model_it_was_given_and_in_bfloat16_a_float32_twin_of_it(
    monkeypatch, main_in_process, tiny_checkpoint, precision):
  """generate.py --benchmark hands benchmark() the --checkpoint_dir model in --precision and, in bfloat16,
  the same weights in float32 as the twin (none in float32)."""
  handed = {}

  def recording_benchmark(upscaler, output_size, runs, work_dir, float32_twin=None):
    handed.update(upscaler=upscaler, output_size=output_size, runs=runs, twin=float32_twin)
    return {'recorded': True}

  monkeypatch.setattr(benchmark, 'benchmark', recording_benchmark)
  checkpoint_dir = tiny_checkpoint(SCALE, 'y')
  main_in_process('generate', '--benchmark', f'--checkpoint_dir={checkpoint_dir}', f'--scale={SCALE}',
                  '--channels=y', f'--size={OUTPUT_WIDTH}x{OUTPUT_HEIGHT}', '--runs=2', f'--precision={precision}')
  model, twin = handed['upscaler'], handed['twin']
  assert (handed['output_size'], handed['runs']) == ((OUTPUT_WIDTH, OUTPUT_HEIGHT), 2)
  model_types = [tf.float32, tf.bfloat16 if precision == 'bfloat16' else tf.float32, tf.float32]
  assert convolution_types(model.session.graph) == model_types
  assert model.checkpoint.startswith(checkpoint_dir)
  if precision == 'float32':
    assert twin is None
    return
  assert convolution_types(twin.session.graph) == [tf.float32] * 3
  assert twin.checkpoint == model.checkpoint
  image = np.random.default_rng(0).uniform(size=(12, 10, 1)).astype(np.float32)
  np.testing.assert_allclose(twin.network(image), model.network(image), atol=0.02)  # bfloat16's rounding
