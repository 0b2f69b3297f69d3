"""TensorBoard: train.py writes the loss, the learning rate, the validation PSNR (and bicubic's) and one
validation crop as images into event files in its run folder, and a resumed run appends to them without
writing a step twice or going back. The events are read back here with TensorFlow's own reader, in the
order TensorBoard reads the files (by name); tools.plot_events draws them."""
import collections
import io

import numpy as np
import pytest
from PIL import Image

from superres import checkpoints
from superres import events
from superres import inference
import train
from superres import metrics
from superres import pairs
from conftest import smooth_rgb
from superres.runtime import tf
from tools import plot_events

SCALE = 2
SCALAR_TAGS = ('loss', 'learning_rate')
VALIDATION_TAGS = ('validation/psnr', 'validation/bicubic_psnr')
IMAGE_TAGS = ('validation/bicubic', 'validation/espcn', 'validation/hr')


@pytest.fixture(scope='module')
def validation_images(tmp_path_factory):
  folder = tmp_path_factory.mktemp('tensorboard_validation')
  for index, (width, height) in enumerate([(130, 110), (60, 52)]):
    Image.fromarray(smooth_rgb(height, width, seed=40 + index)).save(folder / f'val{index}.png')
  return folder


@pytest.fixture(scope='module')
def resumed_run(tmp_path_factory, training_images, validation_images, train_in_process):
  """A y x2 run to step 20, then resumed to 30: summaries every 5 steps, validations every 10."""
  folder = tmp_path_factory.mktemp('tensorboard')
  run_dir = folder / 'run'
  args = [f'--data={folder / "patches.h5"}', f'--images_dir={training_images}', f'--checkpoint_dir={run_dir}',
          f'--scale={SCALE}', '--channels=y', '--patch_size=6', '--stride=4', '--seed=0', '--summary_every=5',
          f'--val_dir={validation_images}', '--val_every=10', '--save_every=10']
  train_in_process(*args, '--steps=20')
  train_in_process(*args, '--steps=30')
  return run_dir


def read_summaries(run_dir):
  """{tag: [(file name, step, summary value)]} of every event file of the folder, in TensorBoard's order."""
  summaries = collections.defaultdict(list)
  for path in sorted(run_dir.glob('events.out.tfevents.*')):
    for event in tf.train.summary_iterator(str(path)):
      for value in event.summary.value:
        summaries[value.tag].append((path.name, event.step, value))
  return summaries


def test_the_scalars_and_images_of_a_run_and_its_resume_are_there_each_step_once(resumed_run):
  summaries = read_summaries(resumed_run)
  assert sorted(summaries) == sorted(SCALAR_TAGS + VALIDATION_TAGS + IMAGE_TAGS)
  files = sorted({name for records in summaries.values() for name, _, _ in records})
  assert len(files) == 2  # one per start: the resume appends a file of its own
  for tag, records in summaries.items():
    steps = [step for _, step, _ in records]
    expected = list(range(5, 31, 5)) if tag in SCALAR_TAGS else [10, 20, 30]
    assert steps == expected, tag  # strictly increasing across both files: no step twice, none backwards
    assert all(step > 20 for name, step, _ in records if name == files[1]), tag  # the resume: after step 20


def test_validation_scalars_are_the_logged_psnr_and_bicubics_by_the_evaluation_protocol(resumed_run,
                                                                                      validation_images):
  summaries = read_summaries(resumed_run)
  logged = checkpoints.read_json_lines(resumed_run / checkpoints.VALIDATION_LOG)
  psnr = [(step, value.simple_value) for _, step, value in summaries['validation/psnr']]
  assert [step for step, _ in psnr] == [record['step'] for record in logged]
  np.testing.assert_allclose([value for _, value in psnr], [record['val_psnr'] for record in logged], atol=1e-4)
  bicubic = []
  for path in sorted(validation_images.iterdir()):  # the mean Y-PSNR of Pillow's bicubic, border r
    lr_image, hr_image = pairs.make_lr_hr(Image.open(path), SCALE)
    bicubic.append(metrics.psnr_y(np.asarray(hr_image), np.asarray(lr_image.resize(hr_image.size, Image.BICUBIC)),
                                SCALE))
  for _, _, value in summaries['validation/bicubic_psnr']:
    assert value.simple_value == pytest.approx(np.mean(bicubic), abs=1e-4)
  for _, _, value in summaries['learning_rate']:
    assert value.simple_value == pytest.approx(1e-3)
  losses = [value.simple_value for _, _, value in summaries['loss']]
  assert all(loss > 0 for loss in losses) and losses[-1] < losses[0]


def decoded(value):
  return np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string)))


def test_the_images_are_one_96_pixel_crop_of_the_first_validation_image_upscaled_by_each_method(
    resumed_run, validation_images):
  """The HR crop is cut from the first validation image where it sits on the grid of r pixels; bicubic is
  the same crop of its bicubic upscale, and ESPCN's at step 30 that of the step-30 model's upscale."""
  summaries = read_summaries(resumed_run)
  lr_image, hr_image = pairs.make_lr_hr(Image.open(validation_images / 'val0.png'), SCALE)
  hr = np.asarray(hr_image)
  crops = {tag: decoded(summaries[tag][-1][2]) for tag in IMAGE_TAGS}
  for tag, crop in crops.items():
    assert crop.shape == (96, 96, 3) and summaries[tag][-1][2].image.colorspace == 3, tag
  matches = [(top, left) for top in range(0, hr.shape[0] - 95, SCALE) for left in range(0, hr.shape[1] - 95, SCALE)
             if np.array_equal(hr[top:top + 96, left:left + 96], crops['validation/hr'])]
  assert len(matches) == 1
  top, left = matches[0]
  box = np.s_[top:top + 96, left:left + 96]
  bicubic = np.asarray(lr_image.resize(hr_image.size, Image.BICUBIC))
  np.testing.assert_array_equal(crops['validation/bicubic'], bicubic[box])
  model = inference.Upscaler.from_checkpoint(str(resumed_run), SCALE, 'y')
  try:
    assert model.checkpoint.endswith('espcn.ckpt-30')
    espcn = model.upscale(np.asarray(lr_image))
  finally:
    model.session.close()
  assert np.abs(crops['validation/espcn'].astype(int) - espcn[box]).max() <= 1  # (float round-off at .5)
  assert not np.array_equal(crops['validation/espcn'], crops['validation/bicubic'])
  for tag in ('validation/bicubic', 'validation/hr'):  # the references: the same image at each validation
    assert len({decoded(value).tobytes() for _, _, value in summaries[tag]}) == 1


def test_plot_events_draws_the_three_charts_and_the_crops_of_the_first_and_last_validations(
    resumed_run, tmp_path, main_in_process, monkeypatch):
  """Charts of every logged loss, rate and validation PSNR (bicubic's dashed) against the step; below them
  bicubic, ESPCN at the first validation (step 10) and at the last (30), and HR, each crop pixel 2 x 2 pixels
  of the PNG. Without --output, the PNG goes to result/, not over the README's docs/tensorboard.png."""
  monkeypatch.chdir(tmp_path)
  main_in_process('tools.plot_events', f'--logdir={resumed_run}', '--zoom=2')
  pixels = np.asarray(Image.open(tmp_path / 'result' / 'tensorboard.png').convert('RGB'))
  figure = plot_events.draw_figure(*plot_events.read_events(str(resumed_run)), 2)  # where it put what
  assert pixels.shape[:2] == (round(figure.bbox.height), round(figure.bbox.width))
  summaries = read_summaries(resumed_run)
  charts = [axes for axes in figure.axes if not axes.get_images()]
  assert [axes.get_yscale() for axes in charts] == ['log', 'log', 'linear']
  lines = [(line.get_label(), line.get_xydata().tolist()) for axes in charts for line in axes.get_lines()]
  tags = (('loss', 'loss'), ('learning rate', 'learning_rate'), ('ESPCN', 'validation/psnr'),
          ('bicubic', 'validation/bicubic_psnr'))
  assert lines == [(label, [[step, value.simple_value] for _, step, value in summaries[tag]]) for label, tag in tags]
  crops = [axes for axes in figure.axes if axes.get_images()]
  assert [axes.get_title() for axes in crops] == ['bicubic, step 30', 'ESPCN, step 10', 'ESPCN, step 30',
                                                  'HR, step 30']
  expected = [summaries['validation/bicubic'][-1], summaries['validation/espcn'][0],
              summaries['validation/espcn'][-1], summaries['validation/hr'][-1]]
  for axes, (_, _, value) in zip(crops, expected):
    box = axes.get_window_extent()
    left, top = round(box.x0), pixels.shape[0] - round(box.y1)
    np.testing.assert_array_equal(pixels[top:top + 192, left:left + 192], decoded(value).repeat(2, 0).repeat(2, 1),
                                  err_msg=axes.get_title())


def test_plot_events_of_a_folder_without_events_is_one_error_line(tmp_path, main_in_process, capsys):
  with pytest.raises(SystemExit):
    main_in_process('tools.plot_events', f'--logdir={tmp_path}', f'--output={tmp_path / "plot.png"}')
  assert capsys.readouterr().err.strip() == f'error: {tmp_path}: no TensorBoard events here (train.py writes ' \
                                            f'them into its --checkpoint_dir)'
  assert not (tmp_path / 'plot.png').exists()


def test_two_starts_within_one_second_keep_both_event_files(tmp_path):
  """TensorFlow names an event file after the second it was opened in and the host: a run resumed within
  that second (here: at once) would overwrite the file of the start before, without the suffix train.py
  adds (the first step and the process)."""
  for first_step in (0, 3):
    summaries = events.Summaries(str(tmp_path), first_step, (), SCALE)
    summaries.add_loss(0.5)
    summaries.add_training(first_step + 1, 1e-3)
    summaries.write_pending()
    summaries.close()
  assert [step for _, step, _ in read_summaries(tmp_path)['loss']] == [1, 4]


def test_a_run_that_dies_inside_a_save_has_written_no_event_after_its_last_checkpoint(
    tmp_path, training_images, train_in_process, monkeypatch):
  """Events wait for the checkpoint of their step: a run that dies inside the save of step 6 leaves events
  up to step 3, its last checkpoint, so that its resume from step 3 writes steps 4 to 6 once only."""
  save = train.Trainer.save

  def dying_save(trainer, step):
    if step == 6:
      raise RuntimeError('killed inside the save of step 6')
    return save(trainer, step)
  monkeypatch.setattr(train.Trainer, 'save', dying_save)
  run_dir = tmp_path / 'run'
  args = [f'--data={tmp_path / "patches.h5"}', f'--images_dir={training_images}', f'--checkpoint_dir={run_dir}',
          f'--scale={SCALE}', '--channels=y', '--patch_size=6', '--stride=4', '--save_every=3', '--summary_every=1']
  with pytest.raises(RuntimeError, match='inside the save of step 6'):
    train_in_process(*args, '--steps=9')
  assert tf.train.latest_checkpoint(str(run_dir)).endswith('espcn.ckpt-3')
  assert [step for _, step, _ in read_summaries(run_dir)['loss']] == [1, 2, 3]
  monkeypatch.undo()
  train_in_process(*args, '--steps=9')
  assert [step for _, step, _ in read_summaries(run_dir)['loss']] == list(range(1, 10))
