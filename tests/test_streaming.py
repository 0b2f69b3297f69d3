"""The streaming reader: a patch file larger than --max_memory is read in shuffled blocks of chunks, and
training on it sees every patch once per epoch, each with its own HR patch, as the in-memory reader does."""
import h5py
import numpy as np
import pytest
from superres import patches
from superres import training
from superres.runtime import tf


SETTINGS = {'scale': 2, 'channels': 'y', 'patch_size': 4, 'stride': 2}
ATTRIBUTES = patches.data_attributes(**SETTINGS)


@pytest.fixture(scope='module')
def patch_file(tmp_path_factory, training_images):
  path = tmp_path_factory.mktemp('streaming') / 'patches.h5'
  patches.prepare(str(training_images), str(path), **SETTINGS)
  return path


def patch_bytes(reader):
  """Bytes of the patches a reader holds in memory: all of them in memory, the loaded blocks streamed."""
  if isinstance(reader, patches.InMemoryPatches):
    return reader.lr_data.nbytes + reader.hr_data.nbytes
  return sum(array.nbytes for block in reader.loaded.values() for array in block)


@pytest.mark.parametrize('budget', [25_000, 45_000])  # blocks of one and of two 10,240-byte chunks
def test_a_streamed_file_never_holds_more_patches_in_memory_than_the_budget(patch_file, budget):
  """Over two epochs of training batches (batches straddle blocks), the loaded blocks stay within the
  budget, and the file (56,080 bytes of patches) is larger than that: it is streamed, never all held."""
  in_memory = patches.open_patches(str(patch_file), ATTRIBUTES, 2**30)
  assert isinstance(in_memory, patches.InMemoryPatches) and patch_bytes(in_memory) > budget
  streamed = patches.open_patches(str(patch_file), ATTRIBUTES, budget)
  batches = training.batches(streamed, batch_size=16, seed=0, first_step=0, augment_batches=False)
  held = []
  for _ in range(2 * -(-len(streamed) // 16)):
    next(batches)
    held.append(patch_bytes(streamed))
  assert 0 < max(held) <= budget, held


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


def test_training_on_a_streamed_file_learns_what_training_in_memory_learns_in_that_order(
    tmp_path, patch_file, train_in_process, monkeypatch):
  """train.py reads a file larger than --max_memory with StreamedPatches, whose order mixes patches only
  within blocks; fed that same order, the in-memory reader trains to the very same weights, so streaming
  changes the order of the patches and nothing else (each patch comes with its own label, augmented alike)."""
  streamed_reads = []  # the size of each batch read from the streamed file
  real_read = patches.StreamedPatches.read

  def counted_read(reader, indices):
    streamed_reads.append(len(indices))
    return real_read(reader, indices)

  monkeypatch.setattr(patches.StreamedPatches, 'read', counted_read)
  steps = 60  # 701 patches, 44 batches of 16 an epoch: into the second epoch
  common = [f'--data={patch_file}', '--scale=2', '--channels=y', '--patch_size=4', '--stride=2', f'--steps={steps}',
            '--batch_size=16', '--seed=4']
  train_in_process(*common, f'--checkpoint_dir={tmp_path / "streamed"}', '--max_memory=0.02')
  assert len(streamed_reads) == steps

  def streamed_order(reader, rng):
    """The order the streamed reader of --max_memory=0.02 (MiB) takes for this epoch's generator."""
    del reader  # the in-memory one
    return patches.open_patches(str(patch_file), ATTRIBUTES, int(0.02 * 2**20)).epoch_order(rng)

  monkeypatch.setattr(patches.InMemoryPatches, 'epoch_order', streamed_order)
  train_in_process(*common, f'--checkpoint_dir={tmp_path / "in_memory"}')  # 4096 MiB: held in memory
  assert len(streamed_reads) == steps
  streamed, in_memory = (tf.train.latest_checkpoint(str(tmp_path / name)) for name in ('streamed', 'in_memory'))
  assert streamed.endswith(f'-{steps}') and in_memory.endswith(f'-{steps}')
  for name in ('layer1-conv1/weights', 'layer2-conv2/bias', 'layer3-conv3/weights'):
    np.testing.assert_array_equal(tf.train.load_variable(streamed, name), tf.train.load_variable(in_memory, name))
