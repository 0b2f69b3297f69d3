"""generate.py --benchmark: the network's time per frame against the machine's own matrix-multiply speed,
and the whole PNG-to-PNG job with its parts, all timed in turn in one process (docs/PERFORMANCE.md)."""
import contextlib
import os
import time

import numpy as np
from PIL import Image
from tqdm import tqdm

from superres import choices
from superres import export
from superres import image_files
from superres import inference
from superres import pairs
from superres import runtime
from superres.runtime import tf

try:
  import cv2  # requirements-export.txt: OpenCV's dnn_superres, timed when installed
except ImportError:
  cv2 = None
try:
  from ai_edge_litert.interpreter import Interpreter  # requirements-export.txt: LiteRT, timed when installed
except ImportError:
  Interpreter = None

MATMUL_SIZE = 4096  # the benchmark's peak: a 4096^3 matmul, 137 GFLOP


def multiply_adds_per_pixel(scale, channels):
  """Multiply-adds of espcn's three convolutions for one LR pixel: 5x5xCx64, 3x3x64x32, 3x3x32xr*r*C."""
  return 5 * 5 * channels * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * scale * scale * channels


def network_gflop(lr_height, lr_width, scale, num_channels):
  """Floating-point operations of one pass (2 per multiply-add of the three convolutions), in GFLOP."""
  return 2.0 * lr_height * lr_width * multiply_adds_per_pixel(scale, num_channels) / 1e9


def time_runs(functions, runs, warmup=3):
  """Seconds of each of `runs` calls of each function, after `warmup` untimed ones (graph set-up, kernel
  selection). The functions take turns, so that a busy spell of a shared machine slows all of them alike
  and their ratios hold."""
  for _ in range(warmup):
    for function in functions:
      function()
  seconds = [[] for _ in functions]
  for _ in tqdm(range(runs), desc='timing', unit='run', leave=False, disable=None):
    for function, times in zip(functions, seconds):
      start = time.perf_counter()
      function()
      times.append(time.perf_counter() - start)
  return seconds


@contextlib.contextmanager
def matmul_run():
  """Yields a function that runs one MATMUL_SIZE^3 tf.linalg.matmul, in a session of its own:
  2 * MATMUL_SIZE^3 FLOP over its time is the machine's practical FP32 peak."""
  graph = tf.Graph()
  with graph.as_default():
    matrix = tf.Variable(tf.random.normal([MATMUL_SIZE, MATMUL_SIZE], seed=0))
    product = tf.reduce_sum(tf.linalg.matmul(matrix, matrix))
    with tf.Session(graph=graph) as session:
      session.run(tf.global_variables_initializer())
      yield lambda: session.run(product)


def tflite_run(upscaler, network_input, work_dir):
  """A function that runs the float32 TFLite export in LiteRT (XNNPACK, all cores) on one network input."""
  path = os.path.join(work_dir, 'espcn.tflite')
  export.write_tflite(export.read_weights(upscaler), upscaler.scale, upscaler.channels,
                      upscaler.output_activation, path)
  with runtime.quiet_stderr():  # LiteRT's note that XNNPACK is on
    interpreter = Interpreter(path, num_threads=os.cpu_count())
    input_index = interpreter.get_input_details()[0]['index']
    interpreter.resize_tensor_input(input_index, (1,) + network_input.shape)
    interpreter.allocate_tensors()
  interpreter.set_tensor(input_index, network_input[None])
  return interpreter.invoke


def opencv_run(upscaler, frame_pixels, work_dir):
  """A function that runs OpenCV's dnn_superres with the export on an RGB frame (as BGR), whole job."""
  path = os.path.join(work_dir, 'ESPCN.pb')
  with open(path, 'wb') as stream:
    stream.write(export.dnn_superres_graph_def(export.read_weights(upscaler), upscaler.scale,
                                               upscaler.output_activation).SerializeToString())
  model = cv2.dnn_superres.DnnSuperResImpl_create()
  model.readModel(path)
  model.setModel('espcn', upscaler.scale)
  bgr = cv2.cvtColor(frame_pixels, cv2.COLOR_RGB2BGR)
  return lambda: model.upsample(bgr)


def benchmark(upscaler, output_size, runs, work_dir, float32_twin=None):
  """Times, in turn run by run: the FP32 peak (a matmul), the network on one frame of `output_size`
  (width, height), the whole job on a PNG file and its parts (decoding; the reconstruction graph, pixels in
  and out; this repo's PNG encoder), and Pillow's PNG encoder on the result (and the sizes of both files);
  and the exports in other runtimes, when installed: the network in LiteRT, and OpenCV's dnn_superres ('y'
  models), which includes its colour conversions and chroma.
  `float32_twin`, the same model in float32 when `upscaler` runs in reduced precision, is timed alongside:
  the baseline of its speed-up.
  """
  scale, width, height = upscaler.scale, output_size[0], output_size[1]
  frame = pairs.bicubic_resize(image_files.sample_photo(), (width // scale, height // scale))
  frame_pixels = np.asarray(frame)
  network_input = upscaler.network_input(frame_pixels)
  frame_path, output_path = os.path.join(work_dir, 'frame.png'), os.path.join(work_dir, 'frame_sr.png')
  frame.save(frame_path)
  result = inference.upscale_image(upscaler, frame)
  pillow_result = Image.fromarray(result)
  encoders = [lambda: image_files.save_png(result, output_path),
              lambda: pillow_result.save(output_path, format='PNG', compress_level=1)]
  timed = [lambda: upscaler.network(network_input),
           lambda: inference.upscale_file(upscaler, lambda: image_files.load_image(frame_path), output_path),
           lambda: image_files.load_image(frame_path),
           lambda: upscaler.upscale(frame_pixels)] + encoders
  others = {}
  if Interpreter is not None:
    others['tflite_ms_median'] = tflite_run(upscaler, network_input, work_dir)
  if cv2 is not None and upscaler.channels == 'y':
    others['opencv_ms_median'] = opencv_run(upscaler, frame_pixels, work_dir)
  if float32_twin:
    others['float32_model_ms_median'] = lambda: float32_twin.network(network_input)
  with matmul_run() as matmul:
    (matmul_seconds, model_seconds, end_to_end_seconds, decode_seconds, reconstruction_seconds,
     encode_seconds, pillow_encode_seconds, *other_seconds) = time_runs([matmul] + timed + list(others.values()),
                                                                        runs)
  peak = 2.0 * MATMUL_SIZE ** 3 / np.median(matmul_seconds) / 1e9
  gflop = network_gflop(height // scale, width // scale, scale, network_input.shape[-1])
  median = float(np.median(model_seconds))
  report = {'size': f'{width}x{height}', 'scale': scale, 'channels': upscaler.channels,
            'precision': upscaler.precision,
            'checkpoint': upscaler.checkpoint, 'runs': runs, 'gflop_per_frame': round(gflop, 3),
            'model_ms_median': 1e3 * median, 'model_ms_min': 1e3 * min(model_seconds),
            'model_ms_max': 1e3 * max(model_seconds), 'fps': 1.0 / median, 'gflops': gflop / median,
            'peak_gflops': peak, 'fraction_of_peak': gflop / median / peak,
            'end_to_end_ms_median': 1e3 * float(np.median(end_to_end_seconds)),
            'end_to_end_ratio': float(np.median(end_to_end_seconds)) / median,
            'decode_ms_median': 1e3 * float(np.median(decode_seconds)),
            'reconstruction_ms_median': 1e3 * float(np.median(reconstruction_seconds)),
            'png_encode_ms_median': 1e3 * float(np.median(encode_seconds)),
            'pillow_png_encode_ms_median': 1e3 * float(np.median(pillow_encode_seconds))}
  for key, encode in zip(('png_bytes', 'pillow_png_bytes'), encoders):
    encode()
    report[key] = os.path.getsize(output_path)
  for key, seconds in zip(others, other_seconds):
    report[key] = 1e3 * float(np.median(seconds))
  if float32_twin:
    report['speedup_over_float32'] = report['float32_model_ms_median'] / 1e3 / median
  return report


parse_size = choices.parse_size  # (in choices.py, without TensorFlow: generate.py checks --size first)
