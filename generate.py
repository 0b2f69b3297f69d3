"""Restores a trained ESPCN and upscales images, or scores it against ground truth.

Upscale a file, a folder or a comma-separated list (PNG out, one per input):
  python generate.py --input=photo.jpg --output_dir=result --scale=3 --channels=rgb
With no --input it upscales a sample photo that scikit-image ships (the main job of the README).

Evaluate on a folder of ground-truth images (PSNR/SSIM on Y, bicubic and ESPCN, a table and optional JSON):
  python generate.py --eval_dir=../shared/data/Set5 --scale=3 --channels=y --json=result/set5_x3.json
"""
import contextlib
import os
import tempfile
import time

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from tqdm import tqdm

import espcn
import utils
from espcn import tf

FLAGS = flags.FLAGS
SHIPPED_CHECKPOINTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'checkpoint')
MATMUL_SIZE = 4096  # the benchmark's peak: a 4096^3 matmul, 137 GFLOP
SAMPLE_PHOTO = 'astronaut'  # skimage.data.astronaut(): a 512x512 photo, inside scikit-image's wheel


def define_flags():
  """The command line, defined only when run as a script so that other scripts and tests can import it."""
  utils.define_model_flags()
  flags.adopt_module_key_flags(utils)
  flags.DEFINE_string('input', '', 'Image file, folder or comma-separated list to upscale. '
                      f'Default: the sample photo skimage.data.{SAMPLE_PHOTO}().')
  flags.DEFINE_string('output_dir', 'result', 'Folder for the upscaled PNGs (and the evaluation images).')
  flags.DEFINE_string('checkpoint_dir', '', 'Trained model to use. Default: the shipped model for '
                      '--scale/--channels, checkpoint/espcn_<channels>_x<scale>.')
  flags.DEFINE_string('eval_dir', '', 'Evaluate instead: a folder of ground-truth (HR) images (or a glob '
                      'pattern, or a comma-separated list).')
  flags.DEFINE_string('json', '', 'With --eval_dir or --benchmark: also write the report to this '
                      'JSON file.')
  flags.DEFINE_bool('benchmark', False, 'Time the network on one frame of --size, and the whole job on a '
                    'PNG of that size; --json writes the figures.')
  flags.DEFINE_string('size', '1920x1080', 'With --benchmark: OUTPUT frame size, WIDTHxHEIGHT.')
  flags.DEFINE_integer('runs', 20, 'With --benchmark: timed runs (medians are reported).', lower_bound=1)
  flags.DEFINE_bool('random_weights', False, 'Use an untrained network instead of a checkpoint (speed only).')
  flags.DEFINE_integer('tile', espcn.DEFAULT_TILE, 'LR tile side: an image of more than tile*tile LR pixels '
                       'goes in overlapping tiles of tile x tile, with the same result and bounded memory.',
                       lower_bound=1)
  flags.DEFINE_enum('precision', 'float32', list(espcn.PRECISIONS),
                    "'bfloat16': layer 2 (most of the work) in bfloat16; for CPUs with native "
                    'bfloat16 (AVX512-BF16, AMX): elsewhere it is emulated and slower. README gives its '
                    'PSNR change.')


def shipped_checkpoint_dir(channels, scale):
  return os.path.join(SHIPPED_CHECKPOINTS, f'espcn_{channels}_x{scale}')


# ---------------------------------------------------------------------------------------------------------
# Upscaling images of any colour mode
# ---------------------------------------------------------------------------------------------------------

def upscale_image(upscaler, image):
  """Upscales a PIL image to uint8 pixels of its kind: gray [rH, rW] or RGB [rH, rW, 3], with alpha
  (upscaled with bicubic) as one more channel if the image has transparency.

  Pixels, not a PIL image: a 12000x12000 result is 432 MB, and every conversion would copy it.
  """
  has_alpha = image.mode in ('RGBA', 'LA', 'PA') or 'transparency' in image.info
  colour_mode = utils.colour_mode(image)
  upscaled = upscaler.upscale(np.asarray(image.convert(colour_mode)))
  if not has_alpha:
    return upscaled
  size = (upscaled.shape[1], upscaled.shape[0])
  alpha = utils.bicubic_resize(image.convert(colour_mode + 'A').getchannel('A'), size)
  return np.dstack([upscaled, np.asarray(alpha)])


def sample_photo():
  """The bundled sample photo, as a PIL image (scikit-image is imported only when it is needed)."""
  from skimage import data  # pylint: disable=import-outside-toplevel
  return Image.fromarray(getattr(data, SAMPLE_PHOTO)())


def upscale_files(upscaler, input_spec, output_dir):
  """Upscales every image named by `input_spec` (or the sample photo) into output_dir/<name>_x<r>.png."""
  if input_spec:
    named_images = ((path, lambda path=path: utils.load_image(path))
                    for path in utils.list_images(input_spec))
  else:
    named_images = [(SAMPLE_PHOTO, sample_photo)]
  for name, load in named_images:
    output = os.path.join(output_dir, f'{output_stem(name)}_x{upscaler.scale}.png')
    upscale_file(upscaler, load, output)
    print(f'{name} -> {output}')


def output_stem(path):
  """What the outputs of an input image are named after: its file name without the extension."""
  return os.path.splitext(os.path.basename(path))[0]


def check_distinct_names(paths):
  """Refuses inputs whose outputs would have one name (a.png and a.jpg, or d1/a.png and d2/a.png): the
  later one would silently overwrite the earlier one's result."""
  first_with_stem = {}
  for path in paths:
    earlier = first_with_stem.setdefault(output_stem(path), path)
    if earlier != path:
      raise utils.InputError(f'{path}: its outputs would overwrite those of {earlier} (the same name); '
                             f'rename one of them')


def upscale_file(upscaler, load, output):
  """Decode (`load()`), colour handling and network, PNG encoding: the whole job for one image."""
  utils.save_png(upscale_image(upscaler, load()), output)


# ---------------------------------------------------------------------------------------------------------
# Evaluation against ground truth
# ---------------------------------------------------------------------------------------------------------

def evaluate_image(upscaler, path, output_dir):
  """Scores one ground-truth image and saves its LR, bicubic, ESPCN and HR versions."""
  lr_image, hr_image = utils.ground_truth_pair(path, upscaler.scale)
  hr = np.asarray(hr_image)
  bicubic = np.asarray(utils.bicubic_resize(lr_image, hr_image.size))
  sr = upscaler.upscale(np.asarray(lr_image))
  stem = output_stem(path)
  for suffix, picture in (('lr', np.asarray(lr_image)), ('bicubic', bicubic), ('espcn', sr), ('hr', hr)):
    utils.save_png(picture, os.path.join(output_dir, f'{stem}_{suffix}.png'))
  border = upscaler.scale
  return {'name': stem,
          'psnr_y': utils.psnr_y(hr, sr, border), 'ssim_y': utils.ssim_y(hr, sr, border),
          'bicubic_psnr_y': utils.psnr_y(hr, bicubic, border),
          'bicubic_ssim_y': utils.ssim_y(hr, bicubic, border)}


def format_table(rows, mean):
  """Per-image and mean scores as a Markdown table."""
  lines = ['| image | bicubic PSNR | bicubic SSIM | ESPCN PSNR | ESPCN SSIM |', '|---|---|---|---|---|']
  for name, scores in [(row['name'], row) for row in rows] + [('**mean**', mean)]:
    lines.append(f'| {name} | {scores["bicubic_psnr_y"]:.2f} | {scores["bicubic_ssim_y"]:.4f} '
                 f'| {scores["psnr_y"]:.2f} | {scores["ssim_y"]:.4f} |')
  return '\n'.join(lines)


def evaluate(upscaler, eval_dir, output_dir):
  """Scores every image of `eval_dir`; returns the JSON report."""
  # disable=None: no bar unless stderr is a terminal, where `with` clears it before an error is printed.
  with tqdm(utils.list_images(eval_dir), desc='evaluating', unit='image', leave=False, disable=None) as paths:
    rows = [evaluate_image(upscaler, path, output_dir) for path in paths]
  mean = {key: float(np.mean([row[key] for row in rows]))
          for key in ('psnr_y', 'ssim_y', 'bicubic_psnr_y', 'bicubic_ssim_y')}
  return {'scale': upscaler.scale, 'channels': upscaler.channels, 'checkpoint': upscaler.checkpoint,
          'images': rows, 'mean': mean}


# ---------------------------------------------------------------------------------------------------------
# Benchmark: model time per frame, against the machine's own matrix-multiply speed
# ---------------------------------------------------------------------------------------------------------

def network_gflop(lr_height, lr_width, scale, num_channels):
  """Floating-point operations of one pass (2 per multiply-add of the three convolutions), in GFLOP."""
  return 2.0 * lr_height * lr_width * espcn.multiply_adds_per_pixel(scale, num_channels) / 1e9


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


def benchmark(upscaler, output_size, runs, work_dir, float32_twin=None):
  """Times, in turn run by run: the FP32 peak (a matmul), the network on one frame of `output_size`
  (width, height), the whole job on a PNG file and its parts (decoding; the reconstruction graph, pixels in
  and out; this repo's PNG encoder), and Pillow's PNG encoder on the result (and the sizes of both files).
  `float32_twin`, the same model in float32 when `upscaler` runs in reduced precision, is timed alongside:
  the baseline of its speed-up.
  """
  scale, width, height = upscaler.scale, output_size[0], output_size[1]
  frame = utils.bicubic_resize(sample_photo(), (width // scale, height // scale))
  frame_pixels = np.asarray(frame)
  network_input = upscaler.network_input(frame_pixels)
  frame_path, output_path = os.path.join(work_dir, 'frame.png'), os.path.join(work_dir, 'frame_sr.png')
  frame.save(frame_path)
  result = upscale_image(upscaler, frame)
  pillow_result = Image.fromarray(result)
  encoders = [lambda: utils.save_png(result, output_path),
              lambda: pillow_result.save(output_path, format='PNG', compress_level=1)]
  timed = [lambda: upscaler.network(network_input),
           lambda: upscale_file(upscaler, lambda: utils.load_image(frame_path), output_path),
           lambda: utils.load_image(frame_path),
           lambda: upscaler.upscale(frame_pixels)] + encoders
  if float32_twin:
    timed.append(lambda: float32_twin.network(network_input))
  with matmul_run() as matmul:
    (matmul_seconds, model_seconds, end_to_end_seconds, decode_seconds, reconstruction_seconds,
     encode_seconds, pillow_encode_seconds, *float32_seconds) = time_runs([matmul] + timed, runs)
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
  if float32_seconds:
    float32_median = float(np.median(float32_seconds[0]))
    report.update({'float32_model_ms_median': 1e3 * float32_median,
                   'speedup_over_float32': float32_median / median})
  return report


def parse_size(text, scale):
  """--size as (width, height): positive multiples of the scale, as an output size must be."""
  try:
    width, height = (int(part) for part in text.lower().split('x'))
  except ValueError:
    raise utils.InputError(f'--size={text}: expected WIDTHxHEIGHT, e.g. 1920x1080') from None
  if min(width, height) <= 0 or width % scale or height % scale:
    raise utils.InputError(f'--size={text}: width and height must be positive multiples of --scale={scale}')
  return width, height


def make_upscaler(precision):
  """The model the flags ask for, in `precision`."""
  if FLAGS.random_weights:
    return espcn.Upscaler.with_random_weights(FLAGS.scale, FLAGS.channels, FLAGS.tile, precision)
  checkpoint_dir = FLAGS.checkpoint_dir or shipped_checkpoint_dir(FLAGS.channels, FLAGS.scale)
  return espcn.Upscaler.from_checkpoint(checkpoint_dir, FLAGS.scale, FLAGS.channels, FLAGS.tile, precision)


def check_inputs():
  """What can be checked without a model, checked before loading one: a bad flag fails at once."""
  if FLAGS.json and not (FLAGS.benchmark or FLAGS.eval_dir):
    raise utils.InputError(f'--json={FLAGS.json}: only --eval_dir and --benchmark write a report')
  if FLAGS.json:
    utils.ensure_writable_dir(os.path.dirname(os.path.abspath(FLAGS.json)))
  if FLAGS.benchmark:
    parse_size(FLAGS.size, FLAGS.scale)
    return
  if FLAGS.eval_dir or FLAGS.input:  # a missing folder, an empty pattern or clashing names
    check_distinct_names(utils.list_images(FLAGS.eval_dir or FLAGS.input))
  utils.ensure_writable_dir(FLAGS.output_dir)


@utils.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  check_inputs()
  upscaler = make_upscaler(FLAGS.precision)
  print(f'checkpoint: {upscaler.checkpoint}')
  if FLAGS.benchmark:
    float32_twin = make_upscaler('float32') if FLAGS.precision != 'float32' else None
    with tempfile.TemporaryDirectory() as work_dir:
      report = benchmark(upscaler, parse_size(FLAGS.size, FLAGS.scale), FLAGS.runs, work_dir, float32_twin)
    print(utils.format_report(report))
  elif FLAGS.eval_dir:
    report = evaluate(upscaler, FLAGS.eval_dir, FLAGS.output_dir)
    print(format_table(report['images'], report['mean']))
  else:
    upscale_files(upscaler, FLAGS.input, FLAGS.output_dir)
    return
  if FLAGS.json:
    utils.write_json(report, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
