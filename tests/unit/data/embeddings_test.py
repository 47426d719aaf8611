"""The embedding cache: round trip, id checks, clear failures."""

import numpy as np
import pytest

from rdmjax.data import embeddings
from rdmjax.errors import InputError

META = dict(model='m', layer='l', preprocessing='p', subject='subj01')


def _write(path, n_train=5, n_test=3, d=4):
  rng = np.random.default_rng(0)
  emb = rng.standard_normal((n_train + n_test, d))
  ids = np.r_[np.arange(n_train) * 7, 1000 + np.arange(n_test)]
  splits = ['train'] * n_train + ['test'] * n_test
  embeddings.write(path, emb, ids, splits, META)
  return emb.astype(np.float32), ids


def test_round_trip_and_split_selection(tmp_path):
  emb, ids = _write(tmp_path / 'c.npz')
  got, meta = embeddings.read(tmp_path / 'c.npz')
  np.testing.assert_array_equal(got, emb)
  assert got.dtype == np.float32 and meta['model'] == 'm'
  train, meta = embeddings.read(
    tmp_path / 'c.npz', split='train', expect_ids=ids[:5]
  )
  np.testing.assert_array_equal(train, emb[:5])
  np.testing.assert_array_equal(meta['nsd_ids'], ids[:5])
  assert not list(tmp_path.glob('*.tmp*'))  # written through a rename


def test_other_images_fail_with_one_line(tmp_path):
  _, ids = _write(tmp_path / 'c.npz')
  wrong = ids[:5].copy()
  wrong[2] += 1
  for expect in (wrong, ids[:4]):
    with pytest.raises(InputError, match='ids differ') as e:
      embeddings.read(tmp_path / 'c.npz', split='train', expect_ids=expect)
    assert '\n' not in str(e.value)


def test_missing_damaged_and_bad_writes(tmp_path):
  with pytest.raises(InputError, match='not found.*--mode=embed'):
    embeddings.read(tmp_path / 'none.npz')
  (tmp_path / 'bad.npz').write_bytes(b'junk')
  with pytest.raises(InputError, match='not a valid cache'):
    embeddings.read(tmp_path / 'bad.npz')
  with pytest.raises(InputError, match='meta lacks'):
    embeddings.write(
      tmp_path / 'x.npz', np.ones((2, 3)), [1, 2], ['train'] * 2, {}
    )
  with pytest.raises(InputError, match='NaN'):
    embeddings.write(
      tmp_path / 'x.npz', np.full((2, 3), np.nan), [1, 2], ['train'] * 2, META
    )
