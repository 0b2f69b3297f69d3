"""Restores a trained ESPCN and upscales images, scores it against ground truth, or times it.

Upscale a file, a folder or a comma-separated list (PNG out, one per image; H.264 .mp4 out, one per video):
  python generate.py --input=photo.jpg --output_dir=result --scale=3 --channels=rgb
  python generate.py --input=clip.mp4 --output_dir=result --scale=3 --channels=y
With no --input it upscales a sample photo that comes with scikit-image (astronaut, 512x512). Photos come
out upright (EXIF orientation) with their ICC colour profile. Of several inputs, one that cannot be read is
skipped with a line saying why, the others are written, and the run ends 'N written, M failed' (exit 1 if
any failed); a single input that cannot be read is an error.

Evaluate on a folder of ground-truth images (PSNR/SSIM on Y, bicubic and ESPCN, a table and optional JSON):
  python generate.py --eval_dir=data/Set5 --scale=3 --channels=y --json=result/set5_x3.json
It scores every image or none: one that cannot be used (unreadable, or too small to score at the scale) ends
the run with its error line, since a mean over part of a test set is not that set's score.

Time the network and the whole job on a 1080p frame:
  python generate.py --benchmark --size=1920x1080 --scale=3 --channels=y

Export the model for OpenCV's dnn_superres, TF Serving (SavedModel) and TFLite:
  python generate.py --export_dir=export/y_x3 --scale=3 --channels=y
"""
import os
import sys
import tempfile

from absl import app
from absl import flags
from tqdm import tqdm

from superres import choices
from superres import evaluation
from superres import files
from superres import image_files
from superres import model_flags
from superres import video

# These four load TensorFlow, seconds of start-up; loaded on first use, they load after absl has parsed the
# flags and check_inputs() has checked them, so a mistyped flag or a missing file is reported at once. What
# the flags need of them (precisions, tile, export formats, --size) is in choices.py, which has no TensorFlow.
benchmark = files.import_on_first_use('superres.benchmark')
checkpoints = files.import_on_first_use('superres.checkpoints')
export = files.import_on_first_use('superres.export')
inference = files.import_on_first_use('superres.inference')

FLAGS = flags.FLAGS


def define_flags():
  """The command line, defined only when run as a script so that tests can import this file."""
  model_flags.define_model_flags()
  flags.adopt_module_key_flags(model_flags)
  flags.DEFINE_string('input', '', 'Image or video file, folder or comma-separated list to upscale (videos: '
                      f'{", ".join(video.VIDEO_EXTENSIONS)}). Default: the sample photo '
                      f'skimage.data.{image_files.SAMPLE_PHOTO}().')
  flags.DEFINE_integer('crf', video.DEFAULT_CRF, "Videos: libx264's constant rate factor (0: lossless, 51: "
                       'worst; 18 looks lossless).', lower_bound=0, upper_bound=51)
  flags.DEFINE_enum('preset', video.DEFAULT_PRESET, ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast',
                                                    'medium', 'slow', 'slower', 'veryslow'],
                    "Videos: libx264's preset, its speed against file size.")
  flags.DEFINE_integer('max_frames', 0, 'Videos: upscale only the first N frames, a quick preview (0: all).',
                       lower_bound=0)
  flags.DEFINE_string('output_dir', 'result', 'Folder for the upscaled PNGs (and the evaluation images).')
  flags.DEFINE_string('checkpoint_dir', '', 'Trained model to use. Default: the shipped model for '
                      '--scale/--channels, checkpoint/espcn_<channels>_x<scale>.')
  flags.DEFINE_string('eval_dir', '', 'Evaluate instead: a folder of ground-truth (HR) images (or a glob '
                      'pattern, or a comma-separated list).')
  flags.DEFINE_integer('eval_jpeg_quality', 0, 'With --eval_dir: save each LR image as a JPEG of this quality '
                       '(Pillow, 4:2:0) and decode it before it is upscaled, to score the model on inputs '
                       'like camera and web photos (bicubic upscales the same decoded image). 0: clean LR.',
                       lower_bound=0, upper_bound=100)
  flags.DEFINE_string('json', '', 'With --eval_dir or --benchmark: also write the report to this '
                      'JSON file.')
  flags.DEFINE_bool('benchmark', False, 'Time the network on one frame of --size, and the whole job on a '
                    'PNG of that size; --json writes the figures.')
  flags.DEFINE_string('size', '1920x1080', 'With --benchmark: OUTPUT frame size, WIDTHxHEIGHT.')
  flags.DEFINE_integer('runs', 20, 'With --benchmark: timed runs (medians are reported).', lower_bound=1)
  flags.DEFINE_bool('random_weights', False, 'Use an untrained network instead of a checkpoint (speed only).')
  flags.DEFINE_integer('tile', choices.DEFAULT_TILE, 'LR tile side: an image of more than tile*tile LR '
                       'pixels goes in overlapping tiles of tile x tile, with the same result and bounded '
                       'memory.', lower_bound=1)
  flags.DEFINE_string('export_dir', '', 'Export the model into this folder instead: ESPCN_x<scale>.pb and '
                      ".onnx for OpenCV's dnn_superres ('y' models; .pb up to OpenCV 5.0, .onnx from 5.1), "
                      'saved_model/ (uint8 RGB in and out), espcn_<channels>_x<scale>[_float16].tflite and '
                      'espcn_<channels>_x<scale>.onnx (the network). README, "Use the model elsewhere".')
  flags.DEFINE_list('export_formats', [], f'With --export_dir: which of {", ".join(choices.EXPORT_FORMATS)} to write '
                    "(onnx: the network and, for 'y' models, OpenCV's file; it needs tf2onnx, "
                    "requirements-export.txt). Default: all that apply ('rgb': no dnn_superres; onnx when "
                    'tf2onnx is installed).')
  flags.DEFINE_enum('precision', 'float32', list(choices.PRECISIONS),
                    "'bfloat16': layer 2 (most of the work) in bfloat16; for CPUs with native "
                    'bfloat16 (AVX512-BF16, AMX): elsewhere it is emulated and slower. '
                    'docs/PERFORMANCE.md gives its PSNR change.')


INPUT_EXTENSIONS = files.IMAGE_EXTENSIONS + video.VIDEO_EXTENSIONS


def upscale_files(upscaler, input_spec, output_dir):
  """Upscales every image and video named by `input_spec` (or the sample photo) into output_dir:
  <name>_x<r>.png for an image, <name>_x<r>.mp4 for a video. Returns (written, failed): how many of each.

  One input that cannot be read (files.InputError: corrupt, truncated, 16-bit, too large, not readable)
  ends the run with its error line. Of several (a folder, a pattern, a list), each such one is skipped
  with a line naming it and why, as prepare_data.py skips them, and the others are written: one bad file
  among a camera's hundreds does not cost the rest. main() counts both and fails the run if any failed.
  """
  if not input_spec:
    output = os.path.join(output_dir, f'{image_files.SAMPLE_PHOTO}_x{upscaler.scale}.png')
    inference.upscale_file(upscaler, image_files.sample_photo, output)
    print(f'{image_files.SAMPLE_PHOTO} -> {output}')
    return 1, 0
  paths = files.list_images(input_spec, INPUT_EXTENSIONS)
  jpeg_hint(paths, upscaler)
  if len(paths) == 1:
    upscale_input(upscaler, paths[0], output_dir)
    return 1, 0
  failed = 0
  # disable=None: a bar only on a terminal; lines go above it through tqdm.write, never into it.
  for path in tqdm(paths, desc='inputs', unit='file', leave=False, disable=None):
    try:
      upscale_input(upscaler, path, output_dir)
    except files.InputError as error:
      tqdm.write(f'skipped: {error}', file=sys.stderr)
      failed += 1
  return len(paths) - failed, failed


def upscale_input(upscaler, path, output_dir):
  """One image or video into output_dir, and its line."""
  stem = os.path.join(output_dir, f'{files.output_stem(path)}_x{upscaler.scale}')
  if video.is_video_file(path):
    upscale_clip(upscaler, path, stem + '.mp4')
  else:
    inference.upscale_file(upscaler, lambda: image_files.load_image(path), stem + '.png')
    tqdm.write(f'{path} -> {stem}.png')


def upscale_clip(upscaler, path, output):
  """One video: its frames, seconds and frames per second on a line; a warning for frames that were lost."""
  frames, seconds, lost = video.upscale_video(upscaler, path, output, FLAGS.crf, FLAGS.preset,
                                              FLAGS.max_frames)
  if lost:
    tqdm.write(f'warning: {path}: {lost} frames did not decode (a truncated file?); the {frames} that did are '
               f'written', file=sys.stderr)
  tqdm.write(f'{path} -> {output}: {frames} frames in {seconds:.1f} s, {frames / seconds:.1f} fps')


def check_distinct_names(paths):
  """Refuses inputs whose outputs would have one name (a.png and a.jpg, or d1/a.png and d2/a.png): the
  later one would silently overwrite the earlier one's result."""
  first_with_stem = {}
  for path in paths:
    earlier = first_with_stem.setdefault(files.output_stem(path), path)
    if earlier != path:
      raise files.InputError(f'{path}: its outputs would overwrite those of {earlier} (the same name); '
                             f'rename one of them')


def jpeg_hint(paths, upscaler):
  """One hint line when JPEGs go to a model trained on clean LR: the photo model keeps more of the gain on them
  (docs/JPEG.md). A hint, not a refusal: the clean model still works."""
  jpegs = [path for path in paths if path.lower().endswith(('.jpg', '.jpeg'))]
  model_dir = os.path.dirname(upscaler.checkpoint or '')
  if not jpegs or not os.path.isdir(model_dir) or 'lr_jpeg_quality' in checkpoints.read_config(model_dir):
    return
  tqdm.write(f'hint: {jpegs[0]} is a JPEG; for camera and web JPEGs, {checkpoints.PHOTO_MODEL_DIR} (trained on '
             f'JPEG-compressed inputs) keeps more of the gain: --checkpoint_dir={checkpoints.PHOTO_MODEL_DIR} '
             f'--scale=3 --channels=y', file=sys.stderr)


def make_upscaler(precision):
  """The model the flags ask for, in `precision`."""
  if FLAGS.random_weights:
    return inference.Upscaler.with_random_weights(FLAGS.scale, FLAGS.channels, FLAGS.tile, precision)
  checkpoint_dir = FLAGS.checkpoint_dir or checkpoints.shipped_model_dir(FLAGS.channels, FLAGS.scale)
  return inference.Upscaler.from_checkpoint(checkpoint_dir, FLAGS.scale, FLAGS.channels, FLAGS.tile,
                                            precision)


def check_inputs():
  """What can be checked without a model, checked before loading one: a bad flag fails at once."""
  if FLAGS.json and not (FLAGS.benchmark or FLAGS.eval_dir):
    raise files.InputError(f'--json={FLAGS.json}: only --eval_dir and --benchmark write a report')
  if FLAGS.json:
    files.ensure_writable_parent(FLAGS.json)
  if FLAGS.benchmark:
    choices.parse_size(FLAGS.size, FLAGS.scale)
    return
  if FLAGS.export_dir:
    choices.export_formats_for(FLAGS.channels, FLAGS.export_formats)  # unknown ones, dnn_superres for rgb
    files.ensure_writable_parent(FLAGS.export_dir)
    return
  if FLAGS.eval_dir:  # a missing folder, an empty pattern or clashing names
    check_distinct_names(files.list_images(FLAGS.eval_dir))
  elif FLAGS.input:
    check_distinct_names(files.list_images(FLAGS.input, INPUT_EXTENSIONS))
  files.ensure_writable_dir(FLAGS.output_dir)


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  check_inputs()
  upscaler = make_upscaler(FLAGS.precision)
  written = failed = 0  # inputs upscaled, and skipped as unreadable
  if FLAGS.benchmark:
    float32_twin = make_upscaler('float32') if FLAGS.precision != 'float32' else None
    with tempfile.TemporaryDirectory() as work_dir:
      report = benchmark.benchmark(upscaler, choices.parse_size(FLAGS.size, FLAGS.scale), FLAGS.runs,
                                   work_dir, float32_twin)
    print(files.format_report(report))
  elif FLAGS.export_dir:
    formats = choices.export_formats_for(FLAGS.channels, FLAGS.export_formats)
    for path in export.export(upscaler, FLAGS.export_dir, formats):
      print(path)
  elif FLAGS.eval_dir:
    report = evaluation.evaluate(upscaler, FLAGS.eval_dir, FLAGS.output_dir, FLAGS.eval_jpeg_quality)
    print(evaluation.format_table(report['images'], report['mean']))
  else:
    written, failed = upscale_files(upscaler, FLAGS.input, FLAGS.output_dir)
  print(f'checkpoint: {upscaler.checkpoint}')  # after the job: an input error ends the run with one line
  if FLAGS.json:
    files.write_json(report, FLAGS.json)
  if written + failed > 1:  # several inputs: the count comes last
    print(f'{written} written, {failed} failed')
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
