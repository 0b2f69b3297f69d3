"""Video: clips made here by ffmpeg (the imageio-ffmpeg wheel's) go in, H.264 .mp4 with their sound comes out."""
import json
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from superres import checkpoints
from superres import image_files
from superres import inference
from superres import metrics
from superres import video
from conftest import REPO_ROOT
from superres.runtime import tf

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_clip(path, width, height, seconds, rate='25', audio=True, codec=('-c:v', 'libx264', '-pix_fmt', 'yuv420p'),
              input_options=()):
  """A test pattern clip (ffmpeg's testsrc2, moving colours and text), with a 440 Hz tone if `audio`."""
  command = [FFMPEG, '-v', 'error', '-y', *input_options, '-f', 'lavfi', '-i',
             f'testsrc2=size={width}x{height}:rate={rate}:duration={seconds}']
  if audio:
    command += ['-f', 'lavfi', '-i', f'sine=frequency=440:duration={seconds}', '-c:a', 'aac', '-shortest']
  subprocess.run(command + list(codec) + [str(path)], check=True)
  return path


def make_photo_clip(path, width, height, frames, codec=('-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-crf', '0')):
  """A clip of the sample photo panning right, a pixel per frame: natural colours, any size."""
  photo = np.asarray(image_files.sample_photo())
  raw = b''.join(np.ascontiguousarray(photo[100:100 + height, 150 + index:150 + index + width]).tobytes()
                 for index in range(frames))
  subprocess.run([FFMPEG, '-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{width}x{height}',
                  '-framerate', '25', '-i', '-', *codec, str(path)],
                 input=raw, check=True)
  return path


def read_clip(path):
  """(meta, frames as uint8 [H, W, 3]) of a clip, decoded by ffmpeg."""
  reader = imageio_ffmpeg.read_frames(str(path))
  meta = next(reader)
  width, height = meta['size']
  return meta, [np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]


@pytest.fixture(scope='module')
def model(upscaler):
  return upscaler(3, 'y')


def test_a_clip_keeps_its_frame_count_rate_and_sound_at_r_times_the_size(tmp_path, model):
  clip = make_clip(tmp_path / 'clip.mp4', 48, 32, 1, rate='30000/1001')
  frames, _, lost = video.upscale_video(model, str(clip), str(tmp_path / 'clip_x3.mp4'))
  meta, decoded = read_clip(tmp_path / 'clip_x3.mp4')
  source_meta, source_frames = read_clip(clip)
  assert frames == len(decoded) == len(source_frames) and lost == 0
  assert meta['size'] == (144, 96) and meta['fps'] == source_meta['fps'] == 29.97
  assert meta['codec'] == 'h264' and meta['pix_fmt'].startswith('yuv420p')
  assert meta['audio_codec'] == source_meta['audio_codec'] == 'aac'


LOSSLESS = ('-c:v', 'libx264', '-crf', '0')  # x264's lossless mode: the clip's planes are the photo's conversion
COLOUR_CASES = {  # an input's colour description -> (its encoder options, its frame size)
    'untagged (BT.601)': (LOSSLESS + ('-pix_fmt', 'yuv420p'), (96, 64)),
    'BT.709': (LOSSLESS + ('-pix_fmt', 'yuv420p', '-colorspace', 'bt709'), (96, 64)),
    'BT.709, full range': (LOSSLESS + ('-pix_fmt', 'yuv420p', '-color_range', 'pc', '-colorspace', 'bt709'),
                           (96, 64)),
    'BT.709, odd size (RGB frames)': (LOSSLESS + ('-pix_fmt', 'yuv444p', '-colorspace', 'bt709'), (95, 63)),
}


@pytest.mark.parametrize('case', COLOUR_CASES)
def test_a_frame_is_generates_output_for_that_frame_up_to_h264s_loss(tmp_path, case):
  """Frame 7 of the output against generate.py's job on frame 7 of the input, extracted as a PNG (ffmpeg
  converts it to RGB by its colour description). H.264 at --crf=18 costs about 46 dB here; a wrong colour
  matrix or range costs more than 4 dB (measured: 41.9 untagged output of a BT.709 clip, 28 full range)."""
  model = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir('y', 3), 3, 'y')
  codec, (width, height) = COLOUR_CASES[case]
  clip = make_photo_clip(tmp_path / 'clip.mp4', width, height, 12, codec=codec)
  video.upscale_video(model, str(clip), str(tmp_path / 'clip_x3.mp4'))
  subprocess.run([FFMPEG, '-v', 'error', '-i', str(clip), '-vf', r'select=eq(n\,7)', '-frames:v', '1',
                  str(tmp_path / 'frame7.png')], check=True)
  inference.upscale_file(model, lambda: image_files.load_image(str(tmp_path / 'frame7.png')),
                         str(tmp_path / 'sr.png'))
  expected = np.asarray(Image.open(tmp_path / 'sr.png'))[:height * 3 // 2 * 2, :width * 3 // 2 * 2]
  meta, decoded = read_clip(tmp_path / 'clip_x3.mp4')
  matrix = 'bt709' if 'BT.709' in case else 'smpte170m'  # the input's, or BT.601 for an untagged SD clip
  assert f'tv, {matrix}' in meta['pix_fmt']
  assert metrics.psnr_y(expected, decoded[7], 0) >= 44.0
  assert metrics.psnr_y(expected, decoded[9], 0) < 35.0  # the right frame: two pixels of panning are far off
  model.session.close()


def read_planes(path):
  """The 4:2:0 planes of each frame of a clip: [(Y [H, W], Cb and Cr [2, H/2, W/2])]."""
  reader = imageio_ffmpeg.read_frames(str(path), pix_fmt='yuv420p', bits_per_pixel=12)
  width, height = next(reader)['size']
  planes = [np.frombuffer(frame, np.uint8) for frame in reader]
  return [(frame[:width * height].reshape(height, width), frame[width * height:].reshape(2, height // 2, width // 2))
          for frame in planes]


def test_a_y_model_upscales_the_planes_as_they_are(tmp_path, model):
  """Lossless in and out: the output's planes are upscale_yuv420's of the input's, bit for bit (no RGB on
  the way, Cb and Cr in their places), and its Y plane is generate.py's upscaling of Y as a gray image."""
  clip = make_photo_clip(tmp_path / 'clip.mp4', 64, 48, 3, codec=LOSSLESS + ('-pix_fmt', 'yuv420p'))
  video.upscale_video(model, str(clip), str(tmp_path / 'clip_x3.mp4'), crf=0, preset='ultrafast')
  for (lr_luma, lr_chroma), (sr_luma, sr_chroma) in zip(read_planes(clip), read_planes(tmp_path / 'clip_x3.mp4'),
                                                        strict=True):
    np.testing.assert_array_equal(sr_luma, model.upscale(lr_luma))
    np.testing.assert_array_equal(sr_chroma, model.upscale_yuv420(lr_luma, lr_chroma)[1])


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_upscaled_chroma_lies_where_h264_sites_it(scale):
  """Bicubic interpolation reproduces a ramp: each HR chroma sample takes the ramp's value where it lies.
  H.264 sites chroma level with the left luma column: HR column k is LR chroma column k/r - (r-1)/(4r);
  rows are centred: (k + 0.5)/r - 0.5. (At 10 levels per pixel, centred columns are 1.25 to 1.9 off.)"""
  height, width = 12, 16
  rows, columns = np.mgrid[0:height, 0:width]
  chroma = np.stack([40 + 10 * columns, 40 + 10 * rows], axis=-1).astype(np.uint8)  # Cb along x, Cr along y
  with tf.Graph().as_default(), tf.Session() as session:
    lr_chroma, sr_chroma = inference.chroma_graph(scale)
    sr_chroma = session.run(sr_chroma, {lr_chroma: chroma})
  assert sr_chroma.shape == (scale * height, scale * width, 2)
  inside = slice(3 * scale, -3 * scale)  # samples whose 4 nearest LR samples lie inside the ramp, not its mirror
  expected_cb = 40 + 10 * (np.arange(scale * width) / scale - (scale - 1) / (4 * scale))
  expected_cr = 40 + 10 * ((np.arange(scale * height) + 0.5) / scale - 0.5)
  assert np.abs(sr_chroma[:, inside, 0] - expected_cb[inside]).max() <= 0.5
  assert np.abs(sr_chroma[inside, :, 1].T - expected_cr[inside]).max() <= 0.5


def test_a_frame_two_pixels_wide_has_chroma_one_pixel_wide(model):
  sr_luma, sr_chroma = model.upscale_yuv420(np.full((6, 2), 100, np.uint8), np.full((2, 3, 1), 90, np.uint8))
  assert sr_luma.shape == (18, 6) and sr_chroma.shape == (2, 9, 3) and (sr_chroma == 90).all()


@pytest.mark.parametrize('size, matrix, green', [('64x48', 'smpte170m', 0), ('1280x720', 'bt709', 23)])
def test_an_untagged_clip_is_read_as_players_read_it(tmp_path, size, matrix, green):
  """A clip that names no colour matrix: BT.601 for SD, BT.709 for HD, as players guess. Pure red converted
  with BT.601 and read back with BT.709 gains green (23 levels): the frames are read with the guess."""
  clip = tmp_path / 'red.mp4'
  subprocess.run([FFMPEG, '-v', 'error', '-f', 'lavfi', '-i', f'color=red:size={size}:duration=0.04', '-c:v',
                  'libx264', '-pix_fmt', 'yuv420p', '-qp', '0', str(clip)], check=True)
  assert '(progressive)' in read_clip(clip)[0]['pix_fmt']  # no colour description
  decoder = video.Decoder(str(clip))
  try:
    frame = next(iter(decoder))
  finally:
    decoder.close()
  assert decoder.colour == {'colorspace': matrix}
  assert abs(int(np.median(frame[..., 1])) - green) <= 2


def test_an_odd_output_size_loses_its_last_column_and_row(tmp_path, model):
  clip = make_photo_clip(tmp_path / 'odd.mkv', 33, 21, 5, codec=('-c:v', 'ffv1', '-pix_fmt', 'yuv444p'))
  assert read_clip(clip)[0]['size'] == (33, 21)
  video.upscale_video(model, str(clip), str(tmp_path / 'odd_x3.mp4'))
  assert read_clip(tmp_path / 'odd_x3.mp4')[0]['size'] == (98, 62)  # 99x63 made even


def test_a_rotated_clip_comes_out_upright(tmp_path, model):
  """A phone's portrait clip: landscape frames with a 90-degree display rotation."""
  landscape = make_clip(tmp_path / 'landscape.mp4', 48, 32, 0.4, audio=False)
  rotated = tmp_path / 'portrait.mp4'
  subprocess.run([FFMPEG, '-v', 'error', '-display_rotation', '90', '-i', str(landscape), '-c', 'copy',
                  str(rotated)], check=True)
  video.upscale_video(model, str(rotated), str(tmp_path / 'portrait_x3.mp4'))
  assert read_clip(tmp_path / 'portrait_x3.mp4')[0]['size'] == (96, 144)


def test_max_frames_makes_a_short_preview(tmp_path, model):
  clip = make_clip(tmp_path / 'clip.mp4', 48, 32, 2)
  frames, _, lost = video.upscale_video(model, str(clip), str(tmp_path / 'clip_x3.mp4'), max_frames=5)
  assert frames == len(read_clip(tmp_path / 'clip_x3.mp4')[1]) == 5 and lost == 0


def test_an_interrupted_clip_leaves_an_earlier_output_as_it_was(tmp_path, model, monkeypatch):
  """Ctrl-C at the last frame, when the encoder has long started writing its file."""
  clip = make_clip(tmp_path / 'clip.mp4', 48, 32, 1)
  output = tmp_path / 'out' / 'clip_x3.mp4'
  output.parent.mkdir()
  output.write_bytes(b'an earlier complete output')
  calls = []

  def interrupted(luma, chroma):
    calls.append(luma)
    if len(calls) == 25:
      raise KeyboardInterrupt
    return luma.repeat(3, axis=0).repeat(3, axis=1), chroma.repeat(3, axis=1).repeat(3, axis=2)
  monkeypatch.setattr(model, 'upscale_yuv420', interrupted)
  with pytest.raises(KeyboardInterrupt):
    video.upscale_video(model, str(clip), str(output), preset='ultrafast')
  assert [path.name for path in output.parent.iterdir()] == ['clip_x3.mp4']
  assert output.read_bytes() == b'an earlier complete output'


def test_a_truncated_clip_writes_the_frames_that_decode_and_says_how_many_were_lost(tmp_path, model):
  clip = make_clip(tmp_path / 'clip.mkv', 48, 32, 2, audio=False, codec=('-c:v', 'mjpeg'))
  data = clip.read_bytes()
  truncated = tmp_path / 'truncated.mkv'
  truncated.write_bytes(data[:len(data) // 2])
  frames, _, lost = video.upscale_video(model, str(truncated), str(tmp_path / 'truncated_x3.mp4'))
  assert 10 < frames < 40 and frames + lost == 50
  assert len(read_clip(tmp_path / 'truncated_x3.mp4')[1]) == frames


def bad_clip(tmp_path, case):
  """A file that cannot be upscaled as a video, and the words its error line must contain."""
  if case == 'undecodable':
    path = tmp_path / 'noise.mp4'
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return path, 'decode'
  if case == 'no video stream':
    path = tmp_path / 'sound.mp4'
    subprocess.run([FFMPEG, '-v', 'error', '-f', 'lavfi', '-i', 'sine=duration=1', '-c:a', 'aac', str(path)],
                   check=True)
    return path, 'no video stream'
  clip = make_clip(tmp_path / 'clip.avi', 48, 32, 1, audio=False, codec=('-c:v', 'mjpeg'))
  data = clip.read_bytes()
  for marker in ('FFD8', 'FFC0', 'FFC4', 'FFDA', 'FFDB'):  # JPEG's start, frame, tables and scan markers
    data = data.replace(bytes.fromhex(marker), b'\0\0')
  path = tmp_path / 'empty.avi'  # a video stream of which not one frame decodes
  path.write_bytes(data)
  return path, 'no video frames'


@pytest.mark.parametrize('case', ['undecodable', 'no video stream', 'no frames'])
def test_a_clip_that_cannot_be_upscaled_is_one_error_line_and_no_output(tmp_path, run_script, assert_input_error,
                                                                        case):
  path, words = bad_clip(tmp_path, case)
  result = run_script('generate.py', f'--input={path}', f'--output_dir={tmp_path / "out"}', '--scale=3',
                      '--channels=y')
  assert words in assert_input_error(result, path)
  assert list((tmp_path / 'out').iterdir()) == []


def test_the_command_upscales_a_folder_of_a_clip_and_a_photo(tmp_path, run_script, make_image):
  inputs = tmp_path / 'inputs'
  inputs.mkdir()
  make_clip(inputs / 'clip.webm', 48, 32, 0.4, audio=False, codec=('-c:v', 'libvpx-vp9'))
  make_image(20, 16).save(inputs / 'photo.png')
  result = run_script('generate.py', f'--input={inputs}', f'--output_dir={tmp_path / "out"}', '--scale=2',
                      '--channels=y', '--preset=ultrafast')
  assert result.returncode == 0, result.stderr
  assert sorted(path.name for path in (tmp_path / 'out').iterdir()) == ['clip_x2.mp4', 'photo_x2.png']
  assert f'{inputs / "clip.webm"} -> {tmp_path / "out" / "clip_x2.mp4"}: 10 frames in' in result.stdout


PEAK_RSS = """
import resource, sys
sys.path.insert(0, {repo!r})
from superres.runtime import tf
from superres import checkpoints, inference, video
model = inference.Upscaler.from_checkpoint(checkpoints.shipped_model_dir('y', 3), 3, 'y')
video.upscale_video(model, sys.argv[1], sys.argv[2], preset='ultrafast')
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_length_of_the_clip(tmp_path):
  """A 10 s clip peaks within 15% of a 2 s clip of the same size: frames are streamed, not collected (the
  extra 200 frames of 960x540 would add about 300 MB)."""
  peaks = {}
  for seconds in (2, 10):
    clip = make_clip(tmp_path / f'clip{seconds}.mp4', 320, 180, seconds)
    result = subprocess.run([sys.executable, '-c', PEAK_RSS.format(repo=str(REPO_ROOT)), str(clip),
                             str(tmp_path / f'clip{seconds}_x3.mp4')], capture_output=True, text=True, check=True)
    peaks[seconds] = int(result.stdout.split()[-1])
  assert peaks[10] < 1.15 * peaks[2], peaks


def test_the_clip_and_benchmark_commands_report_every_frame_of_the_clip(tmp_path, run_script):
  """tools.make_clip writes a clip with sound; tools.benchmark_video times the job and its stages on it."""
  clip = tmp_path / 'clip.mp4'
  made = run_script('tools.make_clip', f'--output={clip}', '--size=48x32', '--seconds=0.4')
  assert made.returncode == 0, made.stderr
  meta, frames = read_clip(clip)
  assert len(frames) == 10 and meta['size'] == (48, 32) and meta['audio_codec'] == 'aac'
  report_path = tmp_path / 'report.json'
  measured = run_script('tools.benchmark_video', f'--input={clip}', '--scale=3', '--channels=y', '--rounds=1',
                        f'--json={report_path}')
  assert measured.returncode == 0, measured.stderr
  report = json.loads(report_path.read_text())
  assert report['frames'] == 10 and report['output_size'] == '144x96'
  assert all(report[f'{stage}_ms_per_frame'] > 0 for stage in ('decode', 'network', 'reconstruction', 'encode'))
