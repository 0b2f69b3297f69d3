"""Upscales a large collection of images (a photo archive, a video's frames, a tile set) on Apache Beam.

generate.py --input=FOLDER upscales one image after another on one machine; this runs the same job as a Beam
pipeline, on as many workers as the runner gives it, with the same bytes out (docs/BEAM.md):

  python -m tools.beam_upscale --input='photos/*.jpg' --output=result/photos --scale=3 --channels=rgb \\
      --direct_running_mode=multi_processing --direct_num_workers=2

Every flag this command does not define is a Beam pipeline option (--runner, --direct_num_workers, --project
...), passed on to Beam as it is; docs/BEAM.md gives those of Dataflow, Flink and Spark.

The pipeline: match --input (local paths here; gs://, s3:// and hdfs:// through Beam's filesystems and
their extras) -> group the paths by output name, which spreads them over the workers -> read and decode
each file -> RunInference: this repo's Upscaler, loaded once per worker process -> PNG -> DIR/<name>_x<r>.png,
written to a temporary name and renamed. A file that cannot be read or decoded, whose output name another
input has too, or whose PNG cannot be written, goes to the failures output instead, the others are
written, and DIR/failures.jsonl lists them, one {"file": ..., "error": ...} per line (empty when none
failed). The run ends 'N written, M failed' (exit 1 if any failed), as generate.py.
"""
import io
import json
import logging
import os
import resource
import sys
import tempfile
import uuid

from absl import app
from absl import flags
from absl import logging as absl_logging

from superres import files
from superres import image_files
from superres import model_flags


def _import_beam_quietly():
  """apache_beam, imported without the warning it logs on the root logger when Google Cloud's client
  libraries are not installed (they come with apache-beam[gcp], for gs:// and Dataflow): it would stand
  beside this command's one-line errors on stderr. logging.warning() on a root logger without handlers
  would install one that prints; a handler that drops everything takes the warning instead."""
  root = logging.getLogger()
  silent = logging.NullHandler()
  root.addHandler(silent)
  try:
    import apache_beam  # pylint: disable=import-outside-toplevel
  finally:
    root.removeHandler(silent)
  return apache_beam


beam = _import_beam_quietly()
# pylint: disable=wrong-import-position,wrong-import-order  (after the quiet import of apache_beam above)
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference import base as beam_inference
from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.options.pipeline_options import WorkerOptions
# pylint: enable=wrong-import-position,wrong-import-order

FLAGS = flags.FLAGS

FAILURES_FILE = 'failures.jsonl'  # in --output: one {"file": ..., "error": ...} per input that failed
FAILED = 'failed'  # the tagged output of the DoFns that can fail on one file
METRICS = 'beam_upscale'  # namespace of the counters that the run's last line reports
MODEL_FILES = ('config.json', 'checkpoint')  # besides the checkpoint's own files: what load_model copies


def define_flags():
  model_flags.define_model_flags()
  flags.adopt_module_key_flags(model_flags)
  flags.DEFINE_string('input', None, 'Images to upscale: a glob pattern (photos/*.jpg, gs://bucket/frames/*.png; '
                      '** also matches in sub-folders), a file or a local folder. Only '
                      f'{", ".join(files.IMAGE_EXTENSIONS)} files count.')
  flags.DEFINE_string('output', None, 'Folder for the upscaled PNGs, <name>_x<scale>.png, and failures.jsonl: '
                      'a local path, or gs://, s3://, hdfs:// with the Beam extras for them.')
  flags.DEFINE_string('checkpoint_dir', '', 'Trained model to use, a local folder or one on a Beam filesystem '
                      '(gs://...); it must be there for every worker. Default: the shipped model for '
                      '--scale/--channels, checkpoint/espcn_<channels>_x<scale> of the repo on the worker.')
  flags.DEFINE_integer('tile', None, "LR tile side, as generate.py's --tile (default: its default): memory "
                       'per worker is bounded by the tile, not the image.', lower_bound=1)
  flags.DEFINE_integer('threads', 0, "TensorFlow threads per worker process. 0: the machine's cores divided by "
                       '--direct_num_workers on the DirectRunner (two workers on two cores do not fight over '
                       'them), all of the worker\'s cores on other runners.', lower_bound=0)
  flags.mark_flags_as_required(['input', 'output'])


def parse_flags(argv):
  """This command's flags; returns the rest, Beam's pipeline options. A bad value is one line, exit 1."""
  try:
    return FLAGS(argv, known_only=True)
  except flags.Error as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------------------
# Files through Beam's filesystems
# ---------------------------------------------------------------------------------------------------------

def read_bytes(path):
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
    return stream.read()


def write_atomically(path, write):
  """write(stream) into a temporary file beside `path`, renamed to `path` when complete: a worker that dies
  midway (and is retried elsewhere) leaves no half-written file under the final name (files.atomic_output,
  for any Beam filesystem). The temporary name is unique: a retry may run while the first try still does."""
  temporary = f'{path}.{uuid.uuid4().hex}.tmp'
  try:
    with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
      write(stream)
    FileSystems.rename([temporary], [path])
  except BaseException:
    if FileSystems.exists(temporary):
      FileSystems.delete([temporary])
    raise


class NamedBytes(io.BytesIO):
  """A file's bytes, for image_files.load_image, which names its argument in its error messages (and so
  does Pillow, with repr): this one reads as the file's path there, as generate.py's would, whatever
  filesystem the bytes came from."""

  def __init__(self, data, path):
    super().__init__(data)
    self.path = path

  def __str__(self):
    return self.path

  def __repr__(self):
    return repr(self.path)


def failure(path, error):
  """The failures.jsonl record of an input: its path and why, without the path that an InputError's line
  starts with (the same reason generate.py prints when it skips the file)."""
  reason = str(error)
  return {'file': path, 'error': reason.removeprefix(f'{path}: ')}


def output_path(output_dir, path, scale):
  """Where an input's PNG goes: <name>_x<r>.png, as generate.py names it."""
  return FileSystems.join(output_dir, f'{files.output_stem(path)}_x{scale}.png')


# ---------------------------------------------------------------------------------------------------------
# The model: this repo's Upscaler behind Beam's ModelHandler
# ---------------------------------------------------------------------------------------------------------

def fetch_model(model_dir, local_dir):
  """`model_dir` as a local folder: itself if it is one, else its config, checkpoint state file and
  checkpoint files copied from its Beam filesystem (gs:// ...) into `local_dir`; tf.train.Saver reads local
  files."""
  if os.path.isdir(model_dir):
    return model_dir
  checkpoint_files = [metadata.path for result in FileSystems.match([FileSystems.join(model_dir, '*.ckpt-*')])
                      for metadata in result.metadata_list]
  sources = [FileSystems.join(model_dir, name) for name in MODEL_FILES] + checkpoint_files
  for source in sources:
    with open(os.path.join(local_dir, os.path.basename(source)), 'wb') as stream:
      stream.write(read_bytes(source))
  return local_dir


class UpscalerHandler(beam_inference.ModelHandler):
  """RunInference's model: this repo's Upscaler (what generate.py runs), one image per batch.

  The Upscaler rather than the exported SavedModel: it gives generate.py's bytes for every kind of image
  (gray, palette, alpha, an ICC profile) and goes over large ones tile by tile, so that a worker's memory
  is bounded by the tile; the SavedModel takes whole RGB images only. Not shared across processes
  (share_model_across_processes stays False): the model is 100 KB of weights and loads in a second, so each
  worker process loads its own once and calls it directly, with no images copied to a model server.
  """

  def __init__(self, checkpoint_dir, scale, channels, tile, threads):
    super().__init__(min_batch_size=1, max_batch_size=1)  # images of different sizes do not stack
    self.checkpoint_dir = checkpoint_dir
    self.scale = scale
    self.channels = channels
    self.tile = tile
    self.threads = threads

  def load_model(self):
    """Restores the model on the worker, in a session of `threads` threads."""
    # On the worker, not at the top: the command that builds the pipeline runs no TensorFlow and skips its
    # start-up, seconds that the workers then spend in parallel. runtime first: TensorFlow's settings.
    from superres.runtime import session_config  # pylint: disable=import-outside-toplevel
    from superres.runtime import tf  # pylint: disable=import-outside-toplevel
    from superres import checkpoints  # pylint: disable=import-outside-toplevel
    from superres import inference  # pylint: disable=import-outside-toplevel
    model_dir = self.checkpoint_dir or checkpoints.shipped_model_dir(self.channels, self.scale)
    with tempfile.TemporaryDirectory() as local_dir:
      upscaler = inference.Upscaler.from_checkpoint(fetch_model(model_dir, local_dir), self.scale, self.channels,
                                                    self.tile or inference.DEFAULT_TILE)
    frozen_graph = upscaler.session.graph  # constants only: a new session on it is the same model
    upscaler.session.close()
    upscaler.session = tf.Session(graph=frozen_graph, config=session_config(self.threads))
    return upscaler

  def run_inference(self, batch, model, inference_args=None):
    from superres import inference  # pylint: disable=import-outside-toplevel
    return [beam_inference.PredictionResult(image, inference.upscale_image(model, image)) for image in batch]

  def get_num_bytes(self, batch):
    """The decoded pixels' size, for Beam's metrics (its default pickles the batch to count)."""
    return sum(image.width * image.height * len(image.getbands()) for image in batch)


# ---------------------------------------------------------------------------------------------------------
# The pipeline's steps
# ---------------------------------------------------------------------------------------------------------

def image_paths(metadata):
  """A matched file's path if it is an image by its extension, as files.list_images counts them."""
  if metadata.path.lower().endswith(files.IMAGE_EXTENSIONS):
    yield metadata.path


def one_per_name(name_and_paths):
  """(output name, its inputs) -> the input; inputs whose PNGs would have one name (a.png and a.jpg, or
  d1/a.png and d2/a.png under **) -> the FAILED output, each of them, as generate.py refuses them: one would
  silently overwrite the other."""
  name, paths = name_and_paths
  paths = sorted(paths)
  if len(paths) == 1:
    yield paths[0]
    return
  for path in paths:
    others = ', '.join(other for other in paths if other != path)
    yield beam.pvalue.TaggedOutput(FAILED, {'file': path, 'error': f'its output {name}_x<scale>.png would also '
                                                                   f'be that of {others}; rename one of them'})


class DecodeImage(beam.DoFn):
  """path -> (path, PIL image), decoded as generate.py decodes it (image_files.load_image: upright, 8 bits,
  ICC profile kept); a file that cannot be read or decoded -> the FAILED output."""

  def process(self, path):
    try:
      yield path, image_files.load_image(NamedBytes(read_bytes(path), path))
    except (files.InputError, OSError) as error:
      yield beam.pvalue.TaggedOutput(FAILED, failure(path, error))


class WritePng(beam.DoFn):
  """(path, PredictionResult) -> its PNG in output_dir (image_files.write_png, with the input's ICC profile, as
  generate.py writes it); one that cannot be written -> the FAILED output. Counts the PNGs written and the
  worker's peak memory."""

  def __init__(self, output_dir, scale):
    self.output_dir = output_dir
    self.scale = scale
    self.written = Metrics.counter(METRICS, 'written')
    self.peak_rss_mib = Metrics.distribution(METRICS, 'peak_rss_mib')

  def process(self, element):
    path, result = element
    output = output_path(self.output_dir, path, self.scale)
    icc_profile = result.example.info.get('icc_profile')
    try:
      write_atomically(output, lambda stream: image_files.write_png(result.inference, stream, icc_profile))
    except OSError as error:
      yield beam.pvalue.TaggedOutput(FAILED, failure(path, f'{output}: cannot be written ({error})'))
      return
    self.written.inc()
    self.peak_rss_mib.update(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # KiB on Linux
    yield output


def inference_failures(failed):
  """RunInference's dead letters, (batch of (path, image), (type, repr, traceback lines)) -> records: an
  image that decoded but could not be upscaled (memory, say) is listed too, and the others go on."""
  batch, (_, _, traceback_lines) = failed
  for path, _ in batch:
    yield {'file': path, 'error': traceback_lines[-1].strip()}


def write_failures(records, output_dir):
  """DIR/failures.jsonl, sorted by file: always written, so that a rerun's file replaces an older one."""
  Metrics.counter(METRICS, 'failed').inc(len(records))
  lines = ''.join(json.dumps(record) + '\n' for record in sorted(records, key=lambda record: record['file']))
  write_atomically(FileSystems.join(output_dir, FAILURES_FILE), lambda stream: stream.write(lines.encode()))


def build_pipeline(pipeline, pattern, output_dir, handler):
  """match -> one input per output name -> decode -> RunInference -> PNG, and the failures of each step into
  failures.jsonl."""
  named = (pipeline
           | 'Match' >> fileio.MatchFiles(pattern)
           | 'Images' >> beam.FlatMap(image_paths)
           | 'By name' >> beam.Map(lambda path: (files.output_stem(path), path))
           | 'Group' >> beam.GroupByKey()  # also a fusion break: the paths go to every worker, not one
           | 'One per name' >> beam.FlatMap(one_per_name).with_outputs(FAILED, main='paths'))
  decoded = named.paths | 'Decode' >> beam.ParDo(DecodeImage()).with_outputs(FAILED, main='images')
  upscaled, dead_letters = (decoded.images
                            | 'Upscale' >> beam_inference.RunInference(
                                beam_inference.KeyedModelHandler(handler)).with_exception_handling())
  written = upscaled | 'Write' >> beam.ParDo(WritePng(output_dir, handler.scale)).with_outputs(FAILED, main='pngs')
  not_upscaled = dead_letters.failed_inferences | 'Not upscaled' >> beam.FlatMap(inference_failures)
  _ = ((named.failed, decoded.failed, not_upscaled, written.failed)
       | 'Failures' >> beam.Flatten()
       | 'All' >> beam.combiners.ToList()
       | 'Failures file' >> beam.Map(write_failures, output_dir))


# ---------------------------------------------------------------------------------------------------------
# Checks before the pipeline starts
# ---------------------------------------------------------------------------------------------------------

def input_pattern(spec):
  """--input as a glob pattern: a local folder means every file in it. Refuses one that matches no image."""
  pattern = FileSystems.join(spec, '*') if os.path.isdir(spec) else spec
  try:
    matched = FileSystems.match([pattern])[0].metadata_list
  except (beam.io.filesystem.BeamIOError, ValueError) as error:
    raise files.InputError(f'{spec}: cannot be listed ({error})') from None
  if not any(image_paths(metadata) for metadata in matched):
    raise files.InputError(f'{spec}: matches no {", ".join(files.IMAGE_EXTENSIONS)} file')
  return pattern


def check_output(output_dir):
  """A probe file written and deleted through Beam's filesystems: an unwritable --output fails now, not in
  every worker."""
  if FileSystems.get_filesystem(output_dir).scheme() == 'file':
    files.ensure_writable_dir(output_dir)  # also creates it
    return
  probe = FileSystems.join(output_dir, f'.write-test-{uuid.uuid4().hex}')
  try:
    FileSystems.create(probe).close()
    FileSystems.delete([probe])
  except (beam.io.filesystem.BeamIOError, OSError) as error:
    raise files.InputError(f'{output_dir}: output folder is not writable ({error})') from None


def check_model_dir(model_dir, scale, channels):
  """What the workers' load_model needs, checked where the pipeline is built (without TensorFlow, for any
  filesystem): a config.json of this --scale and --channels and a checkpoint state file beside it."""
  config_path = FileSystems.join(model_dir, 'config.json')
  try:
    config = json.loads(read_bytes(config_path))
    read_bytes(FileSystems.join(model_dir, 'checkpoint'))
  except (beam.io.filesystem.BeamIOError, OSError):
    raise files.InputError(f'{model_dir}: no trained checkpoint here (config.json and checkpoint)') from None
  except ValueError as error:
    raise files.InputError(f'{config_path}: unreadable model config ({error})') from None
  if (config.get('scale'), config.get('channels')) != (scale, channels):
    raise files.InputError(f'{model_dir}: checkpoint is for --scale={config.get("scale")} '
                           f'--channels={config.get("channels")}, not --scale={scale} --channels={channels}')


def shipped_model_dir(channels, scale):
  """checkpoints.shipped_model_dir without importing checkpoints (and TensorFlow) here: the repo's own
  checkpoint/ folder."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'checkpoint',
                      f'espcn_{channels}_x{scale}')


def is_direct(options):
  return options.view_as(StandardOptions).runner in (None, 'DirectRunner')


def quiet_local_workers(options):
  """On the DirectRunner, worker processes log Beam's notes (INFO) and warnings about Google Cloud
  libraries and memory monitoring onto this terminal; only their errors, unless
  --default_sdk_harness_log_level says otherwise."""
  harness = options.view_as(WorkerOptions)
  if is_direct(options) and harness.default_sdk_harness_log_level is None:
    harness.default_sdk_harness_log_level = 'ERROR'


def worker_threads(options):
  """--threads, or its default: the cores per DirectRunner worker process; 0 (all cores) on other runners."""
  if FLAGS.threads or not is_direct(options):
    return FLAGS.threads
  direct = options.view_as(DirectOptions)
  workers = direct.direct_num_workers if direct.direct_running_mode == 'multi_processing' else 1
  return max(1, (os.cpu_count() or 1) // max(1, workers))


def metric(result, name, namespace=METRICS):
  """A counter's or distribution's committed value (None where the runner reports none)."""
  found = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))
  values = [entry.committed for entry in found['counters'] + found['distributions']]
  return values[0] if values else None


@files.exit_on_input_error
def main(argv):
  absl_logging.set_verbosity(absl_logging.WARNING)  # Beam's notes at INFO (which runner, cache sizes) left out
  options = PipelineOptions(argv[1:])  # what this command's flags left: Beam's options
  quiet_local_workers(options)
  pattern = input_pattern(FLAGS.input)
  check_output(FLAGS.output)
  check_model_dir(FLAGS.checkpoint_dir or shipped_model_dir(FLAGS.channels, FLAGS.scale), FLAGS.scale,
                  FLAGS.channels)
  handler = UpscalerHandler(FLAGS.checkpoint_dir, FLAGS.scale, FLAGS.channels, FLAGS.tile,
                            worker_threads(options))
  pipeline = beam.Pipeline(options=options)
  build_pipeline(pipeline, pattern, FLAGS.output, handler)
  result = pipeline.run()
  result.wait_until_finish()
  written, failed = metric(result, 'written') or 0, metric(result, 'failed') or 0
  peak_rss = metric(result, 'peak_rss_mib')
  loads = metric(result, 'load_model_latency_milli_secs', handler.get_metrics_namespace())  # RunInference's
  if peak_rss is not None and loads is not None:
    print(f'peak memory of a worker: {peak_rss.max} MiB; model loads: {loads.count} (one per worker process)')
  print(f'{written} written, {failed} failed' + (f': {FileSystems.join(FLAGS.output, FAILURES_FILE)}'
                                                  if failed else ''))
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  app.run(main, flags_parser=parse_flags)
