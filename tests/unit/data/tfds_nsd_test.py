"""TFDS builder: what is built and read back equals the direct reader."""

import shutil
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core import shuffle

from rdmjax.data import algonauts, images, tfds_nsd
from rdmjax.errors import InputError

TINY = dict(
  n_train=9,
  n_test=4,
  n_vertices_lh=100,
  n_vertices_rh=130,
  image_size=64,
  n_repeats=2,
  seed=3,
  progress=False,
)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  b = tfds_nsd.build('synthetic', data_dir, synthetic_kwargs=TINY)
  root = data_dir / 'downloads' / tfds_nsd.SYNTHETIC_FOLDER
  return data_dir, b, algonauts.load_subject(root, 'subj01')


def _as_subject(root, tmp_path, k):
  # The synthetic subj01 seen as subject k of an Algonauts download.
  manual = tmp_path / 'algonauts_2023_challenge_data'
  (manual / f'subj{k:02d}').parent.mkdir(parents=True, exist_ok=True)
  shutil.copytree(root / 'subj01', manual / f'subj{k:02d}')
  return manual


def _pixels(path):
  with Image.open(path) as im:
    return np.asarray(im.convert('RGB'))


def test_building_needs_no_tensorflow(built):
  del built
  assert 'tensorflow' not in sys.modules


@pytest.mark.parametrize('split', ['train', 'test'])
def test_synthetic_round_trip_equals_direct_reader(built, split):
  data_dir, _, subject = built
  # Read back through the public TFDS entry point, as a user would.
  source = tfds.data_source(
    'nsd_algonauts/synthetic', split=split, data_dir=str(data_dir)
  )
  got = tfds_nsd.to_arrays(source)
  lh, rh = subject.fmri[split]
  n = subject.n_images(split)
  assert len(source) == n == {'train': 9, 'test': 4}[split]
  assert got['lh'].dtype == np.float32 and got['lh'].shape == (n, 100)
  assert got['rh'].shape == (n, 130)
  np.testing.assert_array_equal(got['lh'], lh)
  np.testing.assert_array_equal(got['rh'], rh)
  np.testing.assert_array_equal(got['nsd_ids'], subject.nsd_ids(split))
  np.testing.assert_array_equal(got['index'], np.arange(n))
  paths = subject.image_paths(split)
  want = np.stack([_pixels(p) for p in paths])
  assert got['images'].dtype == np.uint8
  assert got['images'].shape == (n, 64, 64, 3)
  np.testing.assert_array_equal(got['images'], want)


@pytest.mark.parametrize('split', ['train', 'test'])
def test_png_bytes_are_the_files(built, split):
  data_dir, _, subject = built
  got = tfds_nsd.to_arrays(
    tfds_nsd.load('synthetic', data_dir, split, decode_images=False)
  )
  files = [p.read_bytes() for p in subject.image_paths(split)]
  assert got['png'] == files
  np.testing.assert_array_equal(
    got['images'], images.load_images(subject.image_paths(split))
  )
  np.testing.assert_array_equal(got['lh'], subject.fmri[split][0])


def test_random_access_row_is_row(built):
  data_dir, _, subject = built
  source = tfds_nsd.load('synthetic', data_dir, 'train')
  for i in (7, 0, 4):
    ex = source[i]
    assert ex['index'] == i
    assert ex['nsd_id'] == subject.nsd_ids('train')[i]
    np.testing.assert_array_equal(ex['rh_fmri'], subject.fmri['train'][1][i])


def test_metadata_survives_reopening(built):
  data_dir, _, _ = built
  # A fresh builder reads the info written at build time; building again
  # with the same parameters reuses it.
  b = tfds_nsd.build('synthetic', data_dir, synthetic_kwargs=TINY)
  meta = b.info.metadata
  assert meta['n_vertices'] == {'lh': 100, 'rh': 130}
  assert meta['n_images'] == {'train': 9, 'test': 4}
  assert meta['test_fmri'] is True
  assert meta['synthetic_kwargs']['n_vertices_rh'] == 130
  assert b.info.splits['train'].num_examples == 9
  assert b.info.file_format.value == 'array_record'


def test_real_config_from_manual_dir_without_test_fmri(built, tmp_path):
  _, _, subject = built
  # A challenge-style download: the synthetic subject minus test_fmri/.
  manual = tmp_path / 'algonauts_2023_challenge_data'
  shutil.copytree(subject.paths.train.parent, manual / 'subj01')
  shutil.rmtree(manual / 'subj01' / 'test_split' / 'test_fmri')
  data_dir = tmp_path / 'tfds'
  b = tfds_nsd.build('subj01', data_dir, manual_dir=manual)
  assert b.info.metadata['test_fmri'] is False
  train = tfds_nsd.to_arrays(tfds_nsd.load('subj01', data_dir, 'train'))
  np.testing.assert_array_equal(train['lh'], subject.fmri['train'][0])
  np.testing.assert_array_equal(train['rh'], subject.fmri['train'][1])
  test = tfds_nsd.to_arrays(tfds_nsd.load('subj01', data_dir, 'test'))
  assert test['lh'] is None and test['rh'] is None
  np.testing.assert_array_equal(test['nsd_ids'], subject.nsd_ids('test'))
  assert test['images'].shape == (4, 64, 64, 3)


def test_many_shards_keep_row_order_and_never_spill(
  built, tmp_path, monkeypatch
):
  data_dir, _, subject = built
  # TFDS's Shuffler (the GeneratorBasedBuilder path) spills to disk through
  # tf.io.gfile past 1 GB, i.e. needs TensorFlow for a real subject. With a
  # zero threshold any use of it fails here, at toy size.
  monkeypatch.setattr(shuffle, 'MAX_MEM_BUFFER_SIZE', 0)
  monkeypatch.setattr(tfds_nsd, 'SHARD_BYTES', 3 * 64 * 64 * 3)
  out = tmp_path / 'tfds'
  root = data_dir / 'downloads' / tfds_nsd.SYNTHETIC_FOLDER
  tfds_nsd.build('subj05', out, manual_dir=_as_subject(root, tmp_path, 5))
  files = sorted((out / 'nsd_algonauts' / 'subj05' / '1.0.0').glob('*train*'))
  assert len(files) > 2
  got = tfds_nsd.to_arrays(tfds_nsd.load('subj05', out, 'train'))
  np.testing.assert_array_equal(got['index'], np.arange(9))
  np.testing.assert_array_equal(got['nsd_ids'], subject.nsd_ids('train'))
  np.testing.assert_array_equal(got['lh'], subject.fmri['train'][0])


def test_bad_input(built, tmp_path):
  data_dir, _, _ = built
  with pytest.raises(InputError, match='subj09'):
    tfds_nsd.build('subj09', tmp_path)
  with pytest.raises(InputError, match='manual_dir'):
    tfds_nsd.build('subj02', tmp_path)
  with pytest.raises(InputError, match='subj03 not found'):
    tfds_nsd.build('subj03', tmp_path, manual_dir=tmp_path)
  with pytest.raises(InputError, match='not built'):
    tfds_nsd.load('subj04', tmp_path)
  # Same data_dir, other synthetic parameters: refuse the stale build.
  with pytest.raises(InputError, match='synthetic_kwargs'):
    tfds_nsd.build('synthetic', data_dir, synthetic_kwargs=dict(TINY, seed=4))


def test_tfds_stage_builds_the_configured_subject(built, tmp_path):
  """`--mode=tfds`: the synthetic default without a root, else data.root."""
  from pathlib import Path

  from rdmjax import config_lib
  from rdmjax.stages import tfds as tfds_stage

  configs = Path(__file__).resolve().parents[3] / 'configs' / 'x.py'
  c = config_lib.load_sibling(str(configs), 'default', 'tiny')
  c.data.synthetic.update({k: v for k, v in TINY.items() if k != 'progress'})
  out = tfds_stage.run(c, tmp_path / 'synth')
  assert (out['config'], out['splits']) == (
    'synthetic',
    {'train': 9, 'test': 4},
  )
  _, _, subject = built
  c.data.root = str(_as_subject(subject.paths.train.parent.parent, tmp_path, 2))
  c.data.subject = 'subj02'
  out = tfds_stage.run(c, tmp_path / 'real')
  assert (out['config'], out['splits']) == ('subj02', {'train': 9, 'test': 4})
  source = tfds.data_source(
    'nsd_algonauts/subj02', split='test', data_dir=out['data_dir']
  )
  np.testing.assert_array_equal(
    tfds_nsd.to_arrays(source)['nsd_ids'], subject.nsd_ids('test')
  )
  text = (tmp_path / 'real' / 'report.md').read_text()
  assert 'nsd_algonauts/subj02' in text
