"""The streaming reader: a patch file larger than --max_memory is read in shuffled blocks of chunks, and
training on it sees every patch once per epoch, each with its own HR patch, as the in-memory reader does."""
import h5py
import numpy as np
import pytest
import patches
import training


SETTINGS = {'scale': 2, 'channels': 'y', 'patch_size': 4, 'stride': 2}
ATTRIBUTES = patches.data_attributes(**SETTINGS)


@pytest.fixture(scope='module')
def patch_file(tmp_path_factory, training_images):
  path = tmp_path_factory.mktemp('streaming') / 'patches.h5'
  patches.prepare(str(training_images), str(path), **SETTINGS)
  return path


def test_a_file_larger_than_the_budget_is_streamed(patch_file):
  assert isinstance(patches.open_patches(str(patch_file), ATTRIBUTES, 2**30), patches.InMemoryPatches)
  streamed = patches.open_patches(str(patch_file), ATTRIBUTES, 20_000)
  assert isinstance(streamed, patches.StreamedPatches)
  assert len(streamed.blocks) == 0 and streamed.chunks_per_block >= 1


@pytest.mark.parametrize('batch_size', [5, 300])  # batches within a block, and batches spanning blocks
def test_streamed_epochs_visit_every_patch_once_with_its_own_label(patch_file, batch_size):
  streamed = patches.open_patches(str(patch_file), ATTRIBUTES, 20_000)
  with h5py.File(patch_file, 'r') as data_file:
    lr_all, hr_all = data_file['input'][:], data_file['label'][:]
  num_patches = len(lr_all)
  assert num_patches > 3 * streamed.chunk * streamed.chunks_per_block, 'the file must span several blocks'
  for epoch in range(2):
    order = streamed.epoch_order(np.random.default_rng([0, epoch]))
    assert sorted(order) == list(range(num_patches))
    for start in range(0, num_patches, batch_size):
      indices = np.sort(order[start:start + batch_size])
      lr_batch, hr_batch = streamed.read(indices)
      np.testing.assert_array_equal(lr_batch, lr_all[indices])
      np.testing.assert_array_equal(hr_batch, hr_all[indices])
    assert len(streamed.loaded) <= 2


def test_streamed_batches_resume_where_they_stopped(patch_file):
  def batch_at(step):
    streamed = patches.open_patches(str(patch_file), ATTRIBUTES, 20_000)
    return next(training.batches(streamed, batch_size=16, seed=1, first_step=step, augment_batches=True))
  uninterrupted = training.batches(patches.open_patches(str(patch_file), ATTRIBUTES, 20_000), batch_size=16,
                                seed=1, first_step=0, augment_batches=True)
  for _ in range(40):
    expected = next(uninterrupted)
  for got, want in zip(batch_at(39), expected):
    np.testing.assert_array_equal(got, want)


def test_training_streams_a_file_larger_than_max_memory(tmp_path, patch_file, train_in_process, capsys):
  train_in_process(f'--data={patch_file}', f'--checkpoint_dir={tmp_path / "run"}', '--scale=2', '--channels=y',
                   '--patch_size=4', '--stride=2', '--steps=30', '--max_memory=0.02')
  assert '(StreamedPatches)' in capsys.readouterr().out
