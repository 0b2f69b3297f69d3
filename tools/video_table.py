"""The video table: how the y x3 models hold up when the LR frames are H.264, as a clip's frames are.

A clip is made here from real photos: a camera's slow pan and zoom across scikit-image's bundled astronaut,
coffee and rocket photos side by side (the HR frames). Each HR frame is shrunk by 3 with Pillow's bicubic, as
the evaluation shrinks an image, and the LR frames become BT.601 4:2:0 planes (Y as the network sees it);
those are encoded with libx264 at each --crf and decoded again (video.Encoder and video.Decoder, the
imageio-ffmpeg wheel's ffmpeg). Every decoded frame is upscaled as generate.py upscales a clip's frame with a
y model (video.upscale_video, even sizes): its planes through inference.Upscaler.upscale_yuv420, the network on
the Y plane as decoded, so the scores are those of what a user's clip gets (going through RGB would add a
rounding that no clip goes through); and by Pillow's bicubic on the Y plane. The upscaled Y is scored against
the HR frame's (metrics.psnr_y, border 3).

Rows: bicubic and each model; columns: the clean LR (no compression) and each --crf. Each cell is the mean
Y-PSNR (dB) over the frames.

  python -m tools.video_table --checkpoint_dirs=checkpoint/espcn_y_x3,checkpoint/espcn_y_x3_jpeg \\
      --json=result/video_table.json
"""
import functools
import os
import tempfile

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from skimage import data
from tqdm import tqdm

from superres.runtime import session_config
from superres.runtime import tf
from superres import checkpoints
from superres import choices
from superres import colour
from superres import evaluation
from superres import files
from superres import inference
from superres import metrics
from superres import pairs
from superres import video

FLAGS = flags.FLAGS
SCALE = 3
CHANNELS = 'y'
MODEL_DIRS = (checkpoints.shipped_model_dir(CHANNELS, SCALE),
              os.path.join(checkpoints.REPO_ROOT, checkpoints.PHOTO_MODEL_DIR))
PHOTOS = ('astronaut', 'coffee', 'rocket')  # inside scikit-image's wheel: 512x512, 600x400, 640x427
STRIP_HEIGHT = 400  # the photos cut to a common height about their middle: coffee's
MAX_ZOOM = 1.1  # the widest view over the clip, as a multiple of the frame size (never an upscale)
PAN_PIXELS_PER_FRAME = 3  # HR pixels the view moves per frame: 75 per second at 25 fps, a slow pan
FRAME_RATE = 25
BT601 = {'colorspace': 'smpte170m', 'color_primaries': 'smpte170m', 'color_trc': 'smpte170m'}  # colour.py's
MAX_CRF = 51  # libx264's scale: 0 (lossless) to 51 (worst)


def define_flags():
  flags.DEFINE_list('checkpoint_dirs', [], 'y x3 model folders, a row each. Default: '
                    f'{", ".join(os.path.relpath(path, checkpoints.REPO_ROOT) for path in MODEL_DIRS)}, those '
                    'present.')
  flags.DEFINE_list('crf', ['28', '18'], "libx264's constant rate factors for the LR clip, a column each "
                    '(0: lossless; generate.py writes at 18).')
  flags.DEFINE_integer('frames', 48, 'Frames of the clip.', lower_bound=1)
  flags.DEFINE_string('size', '640x360', 'WIDTHxHEIGHT of the HR frames, cut down to multiples of 6 (an even '
                      f'LR frame at x{SCALE}, as 4:2:0 needs); at most {max_size()[0]}x{max_size()[1]}, so '
                      'that every frame holds the photos\' own detail.')
  flags.DEFINE_integer('seed', 0, 'Picks where the camera starts and which way it pans and zooms.')
  flags.DEFINE_integer('threads', 0, 'CPU threads of the models (0: all cores).', lower_bound=0)
  flags.DEFINE_string('json', '', 'Also write the table to this JSON file: {"clip": its settings, with "lr_kbps": '
                      '{crf: bit rate}, "psnr_y": {"bicubic" or model folder: {"clean" or crf: PSNR}}}.')


# ---------------------------------------------------------------------------------------------------------
# The clip: HR frames of a pan over photos, and its LR frames as 4:2:0 planes
# ---------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def photo_strip():
  """The scene the camera pans across: PHOTOS side by side, each cut to STRIP_HEIGHT rows about its middle."""
  photos = [getattr(data, name)() for name in PHOTOS]
  return Image.fromarray(np.hstack([photo[(len(photo) - STRIP_HEIGHT) // 2:][:STRIP_HEIGHT] for photo in photos]))


def max_size():
  """The largest HR frame that the widest view (MAX_ZOOM) keeps inside the strip, in multiples of 6."""
  step = 2 * SCALE
  return int(photo_strip().width / MAX_ZOOM) // step * step, int(STRIP_HEIGHT / MAX_ZOOM) // step * step


def frame_size(text):
  """--size as (width, height), cut down to multiples of 6, or an InputError if the strip cannot hold it."""
  width, height = choices.parse_size(text, 1)
  width, height = width - width % (2 * SCALE), height - height % (2 * SCALE)
  widest, tallest = max_size()
  if not (2 * SCALE <= width <= widest and 2 * SCALE <= height <= tallest):
    raise files.InputError(f'--size={text}: give 6x6 to {widest}x{tallest} (the photos are {STRIP_HEIGHT} '
                           'pixels tall; larger frames would be upscaled photos)')
  return width, height


def frame_windows(strip_width, width, height, frames, seed):
  """The box (left, top, right, bottom) of the strip that each HR frame shows: the view pans by
  PAN_PIXELS_PER_FRAME (less if the strip is too short for the clip) while it zooms between 1 and MAX_ZOOM
  times the frame size; `seed` picks where it starts and whether it pans left or right, zooms in or out."""
  rng = np.random.default_rng(seed)
  zooms = np.linspace(1.0, MAX_ZOOM, frames)[::rng.choice([-1, 1])]  # [frames]: view size / frame size
  room = strip_width - width * MAX_ZOOM  # where the widest view can start
  pan = min(PAN_PIXELS_PER_FRAME * (frames - 1), room)
  start = rng.uniform(0, room - pan)
  lefts = np.linspace(start, start + pan, frames)[::rng.choice([-1, 1])]  # [frames]
  tops = (STRIP_HEIGHT - height * zooms) * rng.uniform()  # [frames]: the same fraction of the room left
  return [(left, top, left + width * zoom, top + height * zoom) for left, top, zoom in zip(lefts, tops, zooms)]


def hr_clip(width, height, frames, seed):
  """The HR frames, uint8 [height, width, 3] RGB: each its window of the strip, shrunk to the frame size by
  Pillow's bicubic (antialiased: the photos' detail, never interpolated up)."""
  strip = photo_strip()
  return [np.asarray(strip.resize((width, height), Image.BICUBIC, box=window))
          for window in frame_windows(strip.width, width, height, frames, seed)]


def lr_planes(hr_frame):
  """An HR frame shrunk by r with Pillow's bicubic (as the evaluation shrinks an image), as the 4:2:0 planes
  of a clip: Y [h, w] as the network sees it (BT.601, rounded), and Cb, Cr [2, h/2, w/2], each the mean of a
  2x2 block (colour is not scored)."""
  lr_image, _ = pairs.make_lr_hr(Image.fromarray(hr_frame), SCALE)
  luma = colour.network_channels(lr_image, CHANNELS)[..., 0]  # [h, w]
  chroma = np.asarray(lr_image, np.float64) @ colour.YCBCR_FROM_RGB[1:].T + colour.YCBCR_OFFSET[1:]  # [h, w, 2]
  height, width = luma.shape
  blocks = chroma.reshape(height // 2, 2, width // 2, 2, 2).mean(axis=(1, 3))  # [h/2, w/2, 2]
  return luma, colour.to_uint8(blocks.transpose(2, 0, 1))


def h264_round_trip(planes, crf, path):
  """(the LR frames as libx264 at `crf` leaves them, decoded to 4:2:0 planes as generate.py's reader decodes
  a clip; the clip's bit rate in kbit/s)."""
  height, width = planes[0][0].shape
  encoder = video.Encoder(path, width, height, FRAME_RATE, None, crf, video.DEFAULT_PRESET, yuv420=True,
                          colour=BT601)
  for frame in planes:
    encoder.write(frame)
  encoder.finish()
  decoded, _ = video.decode_clip(path, yuv420=True)
  return decoded, os.path.getsize(path) * 8 / 1000 / (len(planes) / FRAME_RATE)


# ---------------------------------------------------------------------------------------------------------
# The upscalers and their scores
# ---------------------------------------------------------------------------------------------------------

def model_dirs(given):
  """The given folders, or those of MODEL_DIRS that are present."""
  found = given or [path for path in MODEL_DIRS if os.path.isdir(path)]
  if not found:
    raise files.InputError('no y x3 model in checkpoint/: pass --checkpoint_dirs')
  return found


def load_model(model_dir, threads):
  """An Upscaler of a y x3 folder, its session on `threads` threads."""
  upscaler = inference.Upscaler.from_checkpoint(model_dir, SCALE, CHANNELS)
  frozen_graph = upscaler.session.graph  # constants only: a new session on it is the same model
  upscaler.session.close()
  upscaler.session = tf.Session(graph=frozen_graph, config=session_config(threads))
  return upscaler


def row_name(model_dir):
  """A model's row: its folder, relative to the repository if inside it."""
  inside_repo = os.path.abspath(model_dir).startswith(checkpoints.REPO_ROOT + os.sep)
  return os.path.relpath(model_dir, checkpoints.REPO_ROOT) if inside_repo else model_dir


def bicubic_luma(luma, chroma):
  """The bicubic baseline of a frame's planes: Pillow's bicubic on the Y plane (evaluation.bicubic_upscale)."""
  del chroma  # Y is what is scored
  return evaluation.bicubic_upscale(luma, (luma.shape[0] * SCALE, luma.shape[1] * SCALE))


def model_luma(upscaler):
  """A model's upscaling of a frame's planes, generate.py's for a y model's clip; its Y plane."""
  return lambda luma, chroma: upscaler.upscale_yuv420(luma, chroma)[0]


def score(upscalers, hr_frames, columns):
  """{row: {column: mean Y-PSNR}}: each upscaler ((Y, CbCr) planes -> HR Y) on each column's LR frames,
  scored against the HR frames with a border of r."""
  cells = {row: {} for row in upscalers}
  with tqdm(total=len(upscalers) * len(columns) * len(hr_frames), desc='frames upscaled', unit='frame',
            leave=False, disable=None) as progress:
    for column, lr_frames in columns.items():
      for row, upscale in upscalers.items():
        scores = []
        for (luma, chroma), hr_frame in zip(lr_frames, hr_frames, strict=True):
          scores.append(metrics.psnr_y(hr_frame, upscale(luma, chroma), SCALE))
          progress.update(1)
        cells[row][column] = float(np.mean(scores))
  return cells


def column_title(column):
  return 'clean LR' if column == 'clean' else f'crf {column}'


def format_table(cells, clip):
  """Markdown: a row per upscaler, a column per LR kind, then the clip and its bit rates."""
  columns = list(next(iter(cells.values())))
  lines = [f'| {clip["size"]} HR, {clip["frames"]} frames: Y-PSNR (dB) | '
           + ' | '.join(column_title(column) for column in columns) + ' |', '|---|' + '---|' * len(columns)]
  for row, row_cells in cells.items():
    name = row if row == 'bicubic' else f'`{row}`'
    lines.append(f'| {name} | ' + ' | '.join(f'{psnr:.2f}' for psnr in row_cells.values()) + ' |')
  rates = ', '.join(f'crf {crf} {kbps:.0f} kbit/s' for crf, kbps in clip['lr_kbps'].items())
  lines += ['', f'LR {clip["lr_size"]} at {FRAME_RATE} fps, libx264 --preset={video.DEFAULT_PRESET}: {rates}.']
  return '\n'.join(lines)


def parse_crfs(values):
  """--crf as distinct integers from 0 to 51, least compressed first, or an InputError naming the flag."""
  return sorted(set(files.parse_integers(values, 'crf', 0, MAX_CRF, 'integers')))


@files.exit_on_input_error
def main(argv):
  del argv  # Unused: everything comes from flags.
  crfs = parse_crfs(FLAGS.crf)
  width, height = frame_size(FLAGS.size)
  files.ensure_writable_parent(FLAGS.json)
  upscalers = {'bicubic': bicubic_luma}
  for model_dir in model_dirs(FLAGS.checkpoint_dirs):
    upscalers[row_name(model_dir)] = model_luma(load_model(model_dir, FLAGS.threads))
  hr_frames = hr_clip(width, height, FLAGS.frames, FLAGS.seed)
  columns = {'clean': [lr_planes(frame) for frame in hr_frames]}
  bit_rates = {}
  with tempfile.TemporaryDirectory() as work_dir:
    for crf in tqdm(crfs, desc='encoding', unit='clip', leave=False, disable=None):
      columns[str(crf)], bit_rates[str(crf)] = h264_round_trip(columns['clean'], crf,
                                                               os.path.join(work_dir, f'{crf}.mp4'))
  cells = score(upscalers, hr_frames, columns)
  clip = {'photos': list(PHOTOS), 'size': f'{width}x{height}', 'lr_size': f'{width // SCALE}x{height // SCALE}',
          'frames': FLAGS.frames, 'seed': FLAGS.seed, 'lr_kbps': bit_rates}
  print(format_table(cells, clip))
  if FLAGS.json:
    files.write_json({'clip': clip, 'psnr_y': cells}, FLAGS.json)


if __name__ == '__main__':
  define_flags()
  app.run(main)
