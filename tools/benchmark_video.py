"""The video job's speed against the network alone, and where the rest of its time goes.

Runs, in turn in each of --rounds rounds in one process (so that a busy spell of a shared machine slows
all of them alike): the whole job on --input (decode, reconstruction, encode, overlapped by video.py's
threads); the network alone on the same frames; and each stage on its own: decoding, the reconstruction
(the network plus, for 4:2:0 planes ('y' models, even sizes), the rounding of Y and the bicubic chroma
planes; for RGB frames, colour conversion, bicubic chroma and merge), encoding. Reports the medians: the job's and
the network's frames per second and their ratio, and each stage's milliseconds per frame.

  python -m tools.make_clip --output=result/clip.mp4 --size=640x360 --seconds=2
  python -m tools.benchmark_video --input=result/clip.mp4 --scale=3 --channels=y --json=result/video_bench.json
"""
import os
import tempfile

import numpy as np
from absl import app
from absl import flags

from superres import benchmark
from superres import checkpoints
from superres import files
from superres import inference
from superres import model_flags
from superres import video

FLAGS = flags.FLAGS


def define_flags():
  model_flags.define_model_flags()
  flags.DEFINE_string('input', 'result/clip.mp4', 'The clip to upscale (tools.make_clip writes one).')
  flags.DEFINE_integer('rounds', 3, 'Alternating rounds of the job and of the network alone.', lower_bound=1)
  flags.DEFINE_enum('preset', 'veryfast', ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium'],
                    "libx264's preset for the job (generate.py --preset).")
  flags.DEFINE_integer('crf', video.DEFAULT_CRF, "libx264's constant rate factor.", lower_bound=0, upper_bound=51)
  flags.DEFINE_string('json', '', 'Also write the report to this JSON file.')


def encode(frames, decoder, path):
  """The encoder alone, on finished frames."""
  height, width = (frames[0][0] if decoder.yuv420 else frames[0]).shape[:2]
  encoder = video.Encoder(path, width // 2 * 2, height // 2 * 2, decoder.rate, None, FLAGS.crf, FLAGS.preset,
                          decoder.yuv420, decoder.colour)
  for frame in frames:
    encoder.write(frame)
  encoder.finish()


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  files.ensure_writable_parent(FLAGS.json)
  upscaler = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir(FLAGS.channels, FLAGS.scale),
                                                FLAGS.scale, FLAGS.channels)
  yuv420 = FLAGS.channels == 'y'  # as video.upscale_video decides
  frames, decoder = video.decode_clip(FLAGS.input, yuv420)
  reconstruct = (lambda frame: upscaler.upscale_yuv420(*frame)) if decoder.yuv420 else upscaler.upscale
  network_inputs = [upscaler.network_input(frame[0] if decoder.yuv420 else frame) for frame in frames]
  with tempfile.TemporaryDirectory() as work_dir:
    output = os.path.join(work_dir, 'clip.mp4')
    upscaled = [reconstruct(frame) for frame in frames]
    timed = {'job': lambda: video.upscale_video(upscaler, FLAGS.input, output, FLAGS.crf, FLAGS.preset),
             'network': lambda: [upscaler.network(lr_image) for lr_image in network_inputs],
             'decode': lambda: video.decode_clip(FLAGS.input, yuv420),
             'reconstruction': lambda: [reconstruct(frame) for frame in frames],
             'encode': lambda: encode(upscaled, decoder, output)}
    seconds = benchmark.time_runs(list(timed.values()), FLAGS.rounds, warmup=1)  # warm-up: XLA compiles
  medians = {name: float(np.median(values)) for name, values in zip(timed, seconds)}
  count = len(frames)
  job_fps, network_fps = count / medians['job'], count / medians['network']
  height, width = decoder.height, decoder.width
  report = {'input': FLAGS.input, 'size': f'{width}x{height}', 'frames_as': 'yuv420' if decoder.yuv420 else 'rgb',
            'output_size': f'{width * FLAGS.scale // 2 * 2}x{height * FLAGS.scale // 2 * 2}',
            'frames': count, 'scale': FLAGS.scale, 'channels': FLAGS.channels, 'preset': FLAGS.preset,
            'crf': FLAGS.crf, 'rounds': FLAGS.rounds, 'job_fps': job_fps, 'network_fps': network_fps,
            'job_to_network': job_fps / network_fps}
  report.update({f'{stage}_ms_per_frame': 1e3 * medians[stage] / count
                 for stage in ('decode', 'network', 'reconstruction', 'encode')})
  report['merge_ms_per_frame'] = report['reconstruction_ms_per_frame'] - report['network_ms_per_frame']
  files.print_report(report, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
