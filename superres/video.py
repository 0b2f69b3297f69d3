"""Video in, video out: a clip upscaled frame by frame, streamed through ffmpeg pipes, its sound kept.

ffmpeg (the binary inside the imageio-ffmpeg wheel) runs as two processes: a decoder that writes raw frames
into a pipe, and an encoder that reads the upscaled frames from another pipe, encodes them with libx264
(yuv420p, --crf, --preset) and muxes the input's audio stream in unchanged. Here three threads keep both
pipes busy while the network runs: one reads the next frames, the main thread upscales, one writes the
finished ones. Queues of QUEUE_FRAMES frames bound the memory, whatever the clip's length.

The frames travel as the decoder has them and the encoder wants them, 4:2:0 planes (Y at full size, Cb and
Cr at half width and height), whenever the model is a 'y' one and the frame size is even: the network
upscales the Y plane as it is (studio range, what it was trained on) and the chroma planes are upscaled by
bicubic interpolation at a quarter of the pixels (inference.Upscaler.upscale_yuv420); no RGB conversion on
either side. 'rgb' models and odd sizes take 8-bit RGB frames through the same Upscaler as an image
(generate.py's output for that frame as a PNG, to the bit, before H.264). Choices a clip makes for us
(README, "Video"; docs/PERFORMANCE.md, "Video"):
- colour: the output is tagged with the input's colour matrix, primaries and transfer, in studio range (a
  full-range input is converted to it); a clip that names no matrix is read, and tagged, with the one
  players assume (assumed_matrix);
- frame rate: the input's, constant; a variable-rate clip keeps its frames (none dropped or repeated) at
  its average rate;
- rotation: ffmpeg turns the frames upright when decoding; the output carries no rotation tag;
- H.264 4:2:0 needs even sizes: an odd output width or height (x3 of an odd input) loses its last column or
  row;
- the output is written under a temporary name and renamed when complete.
"""
import fractions
import os
import queue
import subprocess
import threading
import time

import imageio_ffmpeg
import numpy as np
from tqdm import tqdm

from superres import files

VIDEO_EXTENSIONS = ('.mp4', '.mov', '.mkv', '.avi', '.webm')
QUEUE_FRAMES = 4  # frames waiting between the decoder, the network and the encoder
DEFAULT_CRF = 18  # libx264's constant rate factor: 18 is visually lossless for most content
DEFAULT_PRESET = 'medium'  # libx264's speed/size trade-off
# Y'CbCr colour matrices (ffmpeg's names) whose 4:2:0 planes pass through as they are, tagged the same
YCBCR_MATRICES = ('bt470bg', 'smpte170m', 'bt709', 'smpte240m', 'fcc', 'bt2020nc')


def is_video_file(path):
  return path.lower().endswith(VIDEO_EXTENSIONS)


def exact_rate(fps):
  """ffmpeg prints rates to two decimals: 29.97 is 30000/1001 (as are 23.976 and 59.94 of theirs)."""
  ntsc = round(fps * 1.001)
  if abs(fps - ntsc / 1.001) < 0.006 and abs(fps - round(fps)) > 0.006:
    return fractions.Fraction(ntsc * 1000, 1001)
  return fractions.Fraction(fps).limit_denominator(1001)


def colour_tags(pix_fmt):
  """The colour description of ffmpeg's stream line, e.g. 'yuv420p(tv, bt709, progressive)' or
  'yuv420p(tv, bt470bg/bt709/unknown, progressive)', as {'colorspace': ..., 'color_primaries': ...,
  'color_trc': ...}: ffmpeg's encoder options, for the ones the stream names."""
  details = pix_fmt.partition('(')[2].rstrip(')').split(', ')
  names = next((item.split('/') for item in details if '/' in item or item in YCBCR_MATRICES), [])
  names = names * 3 if len(names) == 1 else names  # one name: matrix, primaries and transfer alike
  return {option: name for option, name in zip(('colorspace', 'color_primaries', 'color_trc'), names)
          if name != 'unknown'}


def assumed_matrix(width, height):
  """The colour matrix that players assume for a clip that names none: BT.709 at HD sizes, BT.601 below."""
  return 'bt709' if width >= 1280 or height > 576 else 'smpte170m'


class Decoder:
  """The frames of a clip, read ahead by a thread of its own: uint8 [H, W, 3] RGB arrays, or with
  `yuv420` (if the clip is Y'CbCr of an even frame size), each frame's 4:2:0 planes, (Y [H, W], Cb and Cr
  [2, H/2, W/2]), in studio range.

  self.yuv420 says which; self.colour holds the encoder options that describe the frames' colour: the
  clip's own, with a Y'CbCr matrix that players would assume if it names none (its frames are read with
  that matrix too), or one to convert RGB frames with if its matrix is not Y'CbCr.
  """

  def __init__(self, path, max_frames=0, yuv420=False):
    self.path = path
    self.output_params = ['-fps_mode', 'passthrough'] + (['-frames:v', str(max_frames)] if max_frames else [])
    probe = imageio_ffmpeg.read_frames(path)  # the clip's header: size, rate, colour, streams
    try:
      meta = self._header(probe)
    finally:
      probe.close()
    if 'size' not in meta or not meta.get('fps'):
      raise files.InputError(f'{path}: has no video stream')
    self.width, self.height = meta['size']
    self.colour = colour_tags(meta.get('pix_fmt', ''))
    named_matrix = self.colour.get('colorspace')
    if named_matrix not in YCBCR_MATRICES:  # none (read as players read it), or RGB, YCgCo ...
      self.colour['colorspace'] = assumed_matrix(*meta['source_size'])
    self.yuv420 = (yuv420 and named_matrix in YCBCR_MATRICES + (None,) and meta['pix_fmt'].startswith('yuv')
                   and self.width % 2 == 0 and self.height % 2 == 0)
    self.reader = self._open(['-colorspace', self.colour['colorspace']] if named_matrix is None else [])
    try:
      self._header(self.reader)
    except files.InputError:
      self.reader.close()
      raise
    self.rate = exact_rate(meta['fps'])
    self.has_audio = 'audio_codec' in meta
    expected = round(meta.get('duration', 0) * meta['fps'])
    self.expected_frames = min(expected, max_frames) if max_frames else expected
    self.frames = queue.Queue(QUEUE_FRAMES)
    self.error = None
    self.stopping = False
    self.thread = threading.Thread(target=self._read, daemon=True)
    self.thread.start()

  def _header(self, reader):
    """The first item of an imageio-ffmpeg frame generator, the clip's metadata; one InputError line if
    ffmpeg cannot read the clip."""
    try:
      return next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
      log = str(error)  # imageio-ffmpeg's message carries ffmpeg's log, which lists the streams
      if 'Stream #' in log and 'Video:' not in log:
        raise files.InputError(f'{self.path}: has no video stream') from None
      if 'Video:' in log and 'Nothing was written' in log:
        raise files.InputError(f'{self.path}: no video frames decode (an empty or corrupt video stream)') from None
      raise files.InputError(f'{self.path}: not a video that ffmpeg can decode ({log.splitlines()[0]})') from None

  def _open(self, input_params):
    """imageio-ffmpeg's frame generator: 4:2:0 planes in studio range ('-color_range tv' converts a
    full-range clip), or RGB."""
    if self.yuv420:
      return imageio_ffmpeg.read_frames(self.path, pix_fmt='yuv420p', bits_per_pixel=12, input_params=input_params,
                                        output_params=self.output_params + ['-color_range', 'tv'])
    return imageio_ffmpeg.read_frames(self.path, input_params=input_params, output_params=self.output_params)

  def _frame(self, data):
    """The bytes of one frame as arrays (views, no copy)."""
    pixels = np.frombuffer(data, np.uint8)
    if not self.yuv420:
      return pixels.reshape(self.height, self.width, 3)
    luma_size = self.height * self.width
    return (pixels[:luma_size].reshape(self.height, self.width),
            pixels[luma_size:].reshape(2, self.height // 2, self.width // 2))

  def _read(self):
    try:
      for frame in self.reader:
        if self.stopping:
          break
        self.frames.put(self._frame(frame))
    except Exception as error:  # pylint: disable=broad-except  # reported by __iter__, in the main thread
      self.error = error
    finally:
      self.reader.close()  # here, in the thread that runs the generator: it ends ffmpeg
      self.frames.put(None)

  def __iter__(self):
    while (frame := self.frames.get()) is not None:
      yield frame
    if self.error is not None:
      raise files.InputError(f'{self.path}: decoding failed ({str(self.error).splitlines()[0]})')

  def close(self):
    """Stops the reader thread (and ffmpeg with it), taking the frames it still puts in the queue."""
    self.stopping = True
    while self.thread.is_alive():
      try:
        self.frames.get(timeout=0.1)
      except queue.Empty:
        pass


def decode_clip(path, yuv420=False):
  """(all the frames of a short clip, as Decoder gives them; the Decoder, for its rate, colour and
  yuv420): for the tools that score or time a whole clip in memory."""
  decoder = Decoder(path, yuv420=yuv420)
  try:
    return list(decoder), decoder
  finally:
    decoder.close()


class Encoder:
  """An ffmpeg process that encodes frames to H.264 and muxes in an audio stream, fed by a thread.

  Frames are RGB arrays, or with `yuv420` (Y, CbCr) planes as Decoder gives them. `colour`: the encoder
  options that describe them (Decoder.colour); RGB frames are converted to Y'CbCr with that matrix.
  """

  def __init__(self, path, width, height, rate, audio_from, crf, preset, yuv420=False, colour=None):
    colour_options = [item for option, name in (colour or {}).items() for item in (f'-{option}', name)]
    colour_options += ['-color_range', 'tv']
    command = [imageio_ffmpeg.get_ffmpeg_exe(), '-v', 'error', '-y',
               '-f', 'rawvideo', '-pix_fmt', 'yuv420p' if yuv420 else 'rgb24', '-s', f'{width}x{height}',
               '-framerate', str(rate)] + (colour_options if yuv420 else []) + ['-i', '-']
    if audio_from:
      command += ['-i', audio_from, '-map', '0:v:0', '-map', '1:a:0', '-c:a', 'copy', '-shortest']
    command += ['-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', str(crf), '-preset', preset
                ] + colour_options + ['-f', 'mp4', path]
    self.width, self.height, self.yuv420 = width, height, yuv420
    self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    self.frames = queue.Queue(QUEUE_FRAMES)
    self.error = None
    self.thread = threading.Thread(target=self._write, daemon=True)
    self.thread.start()

  def _write(self):
    try:
      while (frame := self.frames.get()) is not None:
        if self.yuv420:  # (Y, CbCr) planes: even sizes, nothing to crop
          for plane in frame:
            self.process.stdin.write(np.ascontiguousarray(plane).data)
        else:
          self.process.stdin.write(np.ascontiguousarray(frame[:self.height, :self.width]).data)
    except OSError as error:  # the encoder died: its stderr says why
      self.error = error
      while self.frames.get() is not None:  # let the main thread finish its puts
        pass

  def write(self, frame):
    self.frames.put(frame)

  def finish(self):
    """Waits for the last frame to be encoded; an InputError with ffmpeg's message if encoding failed."""
    self.frames.put(None)
    self.thread.join()
    self.process.stdin.close()
    message = self.process.stderr.read().decode(errors='replace').strip()
    if self.process.wait() != 0 or self.error is not None:
      detail = message.splitlines()[-1] if message else self.error
      raise files.InputError(f'ffmpeg could not encode the video ({detail})')

  def kill(self):
    self.process.kill()
    self.process.wait()


def upscale_video(upscaler, path, output, crf=DEFAULT_CRF, preset=DEFAULT_PRESET, max_frames=0):
  """Upscales a clip into an H.264 .mp4 at `output`; returns (frames written, seconds, frames lost).

  Frames lost: those the clip's duration promised that did not decode (a truncated file); the ones that
  did are written.
  """
  started = time.perf_counter()
  decoder = Decoder(path, max_frames, yuv420=upscaler.channels == 'y')
  scale = upscaler.scale
  width, height = decoder.width * scale // 2 * 2, decoder.height * scale // 2 * 2  # even, for 4:2:0
  frames = 0
  with files.atomic_output(output) as temporary:
    encoder = None
    try:
      encoder = Encoder(temporary, width, height, decoder.rate, path if decoder.has_audio else None, crf,
                        preset, decoder.yuv420, decoder.colour)
      with tqdm(total=decoder.expected_frames or None, desc=os.path.basename(path), unit='frame',
                leave=False, disable=None) as progress:
        for frame in decoder:
          encoder.write(upscaler.upscale_yuv420(*frame) if decoder.yuv420 else upscaler.upscale(frame))
          frames += 1
          progress.update(1)
      if frames == 0:
        raise files.InputError(f'{path}: no video frames decode (an empty or corrupt video stream)')
      encoder.finish()
    except BaseException:
      if encoder is not None:
        encoder.kill()
      raise
    finally:
      decoder.close()
  lost = decoder.expected_frames - frames
  return frames, time.perf_counter() - started, lost if lost > 1 else 0  # 1: the duration's rounding
