"""Video in, video out: a clip upscaled frame by frame, streamed through ffmpeg pipes, its sound kept.

ffmpeg (the binary inside the imageio-ffmpeg wheel) runs as two processes: a decoder that writes 8-bit RGB
frames into a pipe, and an encoder that reads the upscaled frames from another pipe, encodes them with
libx264 (yuv420p, --crf, --preset) and muxes the input's audio stream in unchanged. Here three threads keep
both pipes busy while the network runs: one reads the next frames, the main thread upscales, one writes the
finished ones. Queues of QUEUE_FRAMES frames bound the memory, whatever the clip's length.

Each frame goes through the same Upscaler as an image (generate.py's output for that frame as a PNG, to the
bit, before H.264). Choices a clip makes for us (README, "Video"):
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

import utils

VIDEO_EXTENSIONS = ('.mp4', '.mov', '.mkv', '.avi', '.webm')
QUEUE_FRAMES = 4  # frames waiting between the decoder, the network and the encoder
DEFAULT_CRF = 18  # libx264's constant rate factor: 18 is visually lossless for most content
DEFAULT_PRESET = 'medium'  # libx264's speed/size trade-off


def is_video_file(path):
  return path.lower().endswith(VIDEO_EXTENSIONS)


def exact_rate(fps):
  """ffmpeg prints rates to two decimals: 29.97 is 30000/1001 (as are 23.976 and 59.94 of theirs)."""
  ntsc = round(fps * 1.001)
  if abs(fps - ntsc / 1.001) < 0.006 and abs(fps - round(fps)) > 0.006:
    return fractions.Fraction(ntsc * 1000, 1001)
  return fractions.Fraction(fps).limit_denominator(1001)


class Decoder:
  """The frames of a clip as uint8 [H, W, 3] RGB arrays, read ahead by a thread of its own."""

  def __init__(self, path, max_frames=0):
    output_params = ['-fps_mode', 'passthrough'] + (['-frames:v', str(max_frames)] if max_frames else [])
    self.path = path
    self.reader = imageio_ffmpeg.read_frames(path, output_params=output_params)
    try:
      meta = next(self.reader)
    except (OSError, RuntimeError, StopIteration) as error:
      log = str(error)  # imageio-ffmpeg's message carries ffmpeg's log, which lists the streams
      if 'Stream #' in log and 'Video:' not in log:
        raise utils.InputError(f'{path}: has no video stream') from None
      if 'Video:' in log and 'Nothing was written' in log:
        raise utils.InputError(f'{path}: no video frames decode (an empty or corrupt video stream)') from None
      raise utils.InputError(f'{path}: not a video that ffmpeg can decode ({log.splitlines()[0]})') from None
    if 'size' not in meta or not meta.get('fps'):
      raise utils.InputError(f'{path}: has no video stream')
    self.width, self.height = meta['size']
    self.rate = exact_rate(meta['fps'])
    self.has_audio = 'audio_codec' in meta
    expected = round(meta.get('duration', 0) * meta['fps'])
    self.expected_frames = min(expected, max_frames) if max_frames else expected
    self.frames = queue.Queue(QUEUE_FRAMES)
    self.error = None
    self.stopping = False
    self.thread = threading.Thread(target=self._read, daemon=True)
    self.thread.start()

  def _read(self):
    try:
      for frame in self.reader:
        if self.stopping:
          break
        self.frames.put(np.frombuffer(frame, np.uint8).reshape(self.height, self.width, 3))
    except Exception as error:  # pylint: disable=broad-except  # reported by __iter__, in the main thread
      self.error = error
    finally:
      self.reader.close()  # here, in the thread that runs the generator: it ends ffmpeg
      self.frames.put(None)

  def __iter__(self):
    while (frame := self.frames.get()) is not None:
      yield frame
    if self.error is not None:
      raise utils.InputError(f'{self.path}: decoding failed ({str(self.error).splitlines()[0]})')

  def close(self):
    """Stops the reader thread (and ffmpeg with it), taking the frames it still puts in the queue."""
    self.stopping = True
    while self.thread.is_alive():
      try:
        self.frames.get(timeout=0.1)
      except queue.Empty:
        pass


class Encoder:
  """An ffmpeg process that encodes RGB frames to H.264 and muxes in an audio stream, fed by a thread."""

  def __init__(self, path, width, height, rate, audio_from, crf, preset):
    command = [imageio_ffmpeg.get_ffmpeg_exe(), '-v', 'error', '-y',
               '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{width}x{height}', '-framerate', str(rate),
               '-i', '-']
    if audio_from:
      command += ['-i', audio_from, '-map', '0:v:0', '-map', '1:a:0', '-c:a', 'copy', '-shortest']
    command += ['-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', str(crf), '-preset', preset,
                '-f', 'mp4', path]
    self.width, self.height = width, height
    self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    self.frames = queue.Queue(QUEUE_FRAMES)
    self.error = None
    self.thread = threading.Thread(target=self._write, daemon=True)
    self.thread.start()

  def _write(self):
    try:
      while (frame := self.frames.get()) is not None:
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
      raise utils.InputError(f'ffmpeg could not encode the video ({detail})')

  def kill(self):
    self.process.kill()
    self.process.wait()


def upscale_video(upscaler, path, output, crf=DEFAULT_CRF, preset=DEFAULT_PRESET, max_frames=0):
  """Upscales a clip into an H.264 .mp4 at `output`; returns (frames written, seconds, frames lost).

  Frames lost: those the clip's duration promised that did not decode (a truncated file); the ones that
  did are written.
  """
  started = time.perf_counter()
  decoder = Decoder(path, max_frames)
  scale = upscaler.scale
  width, height = decoder.width * scale // 2 * 2, decoder.height * scale // 2 * 2  # even, for 4:2:0
  frames = 0
  with utils.atomic_output(output) as temporary:
    encoder = None
    try:
      encoder = Encoder(temporary, width, height, decoder.rate, path if decoder.has_audio else None, crf,
                        preset)
      with tqdm(total=decoder.expected_frames or None, desc=os.path.basename(path), unit='frame',
                leave=False, disable=None) as progress:
        for frame in decoder:
          encoder.write(upscaler.upscale(frame))
          frames += 1
          progress.update(1)
      if frames == 0:
        raise utils.InputError(f'{path}: no video frames decode (an empty or corrupt video stream)')
      encoder.finish()
    except BaseException:
      if encoder is not None:
        encoder.kill()
      raise
    finally:
      decoder.close()
  lost = decoder.expected_frames - frames
  return frames, time.perf_counter() - started, lost if lost > 1 else 0  # 1: the duration's rounding
