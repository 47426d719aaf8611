"""rdmjax.rsa.interop: rsatoolbox conversion both ways, and RDM files.

References are computed independently in float64 numpy. rsatoolbox's
'euclidean' RDM is the squared distance over the number of channels
(`calc_rdm_euclidean`: (|a|^2 + |b|^2 - 2ab) / n_channels); its
'correlation' RDM is 1 - Pearson r, as rdmjax's.
"""

import sys

import numpy as np
import pytest
import rsatoolbox
from scipy.spatial.distance import squareform

from rdmjax.errors import InputError
from rdmjax.rsa import compare, interop
from rdmjax.rsa import rdm as rdm_lib

N, D = 40, 30


def _x(n=N, d=D, seed=0):
  rng = np.random.default_rng(seed)
  base = rng.standard_normal((n, 4)) @ rng.standard_normal((4, d))
  return (base + rng.standard_normal((n, d)) + 2.0).astype(np.float32)


def _err(r, ref):
  """max |r - ref| / max |ref| over the condensed entries."""
  r, ref = interop.condensed(r), interop.condensed(ref)
  return np.abs(r.astype(np.float64) - ref).max() / np.abs(ref).max()


def _ref(x, metric):
  """float64 numpy: 1 - Pearson r, or the squared distance over d."""
  x = x.astype(np.float64)
  if metric == 'correlation':
    return 1.0 - np.corrcoef(x)
  d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
  return d2 / x.shape[1]


def test_condensed_is_squareform_order():
  r = np.asarray(rdm_lib.rdm(_x(), 'correlation'))
  v = interop.condensed(r)
  assert v.dtype == np.float32
  np.testing.assert_array_equal(v, squareform(r, checks=False))
  np.testing.assert_array_equal(v, np.asarray(compare.upper_triangle(r)))
  np.testing.assert_array_equal(interop.condensed(v), v)
  with pytest.raises(InputError, match='symmetric'):
    interop.condensed(r + np.triu(np.ones_like(r), 1))
  with pytest.raises(InputError, match='upper triangle'):
    interop.condensed(v[:-1])


def test_rdmjax_to_rsatoolbox_and_back_is_exact():
  r = rdm_lib.rdm(_x(), 'correlation')  # a jax array
  ids = np.arange(N) * 7 + 100
  rows = np.arange(N) + 5
  rdms = interop.to_rsatoolbox(
    r,
    nsd_ids=ids,
    index=rows,
    measure='correlation',
    rdm_descriptors={'roi': 'V1', 'subject': 'subj01'},
  )
  assert isinstance(rdms, rsatoolbox.rdm.RDMs)
  assert (rdms.n_rdm, rdms.n_cond) == (1, N)
  # rsatoolbox's own square form is rdmjax's matrix: the same pair order.
  np.testing.assert_array_equal(rdms.get_matrices()[0], np.asarray(r))
  assert rdms.dissimilarity_measure == 'correlation'
  assert rdms.rdm_descriptors['roi'] == ['V1']
  np.testing.assert_array_equal(rdms.pattern_descriptors['nsd_id'], ids)
  np.testing.assert_array_equal(rdms.pattern_descriptors['index'], rows)
  # rsatoolbox's subsetting follows the descriptors.
  sub = rdms.subset_pattern('nsd_id', ids[:5])
  np.testing.assert_array_equal(sub.get_matrices()[0], np.asarray(r)[:5, :5])

  back = interop.from_rsatoolbox(rdms)
  assert back.matrix.dtype == np.float64
  np.testing.assert_array_equal(back.matrix, np.asarray(r))  # exact
  np.testing.assert_array_equal(back.pattern_descriptors['nsd_id'], ids)
  np.testing.assert_array_equal(back.pattern_descriptors['index'], rows)
  assert back.measure == 'correlation'
  assert back.rdm_descriptors['roi'] == 'V1'
  assert back.rdm_descriptors['subject'] == 'subj01'

  # A condensed RDM gives the same object; the default index is 0..n-1.
  v = interop.condensed(r)
  again = interop.to_rsatoolbox(v, measure='correlation')
  np.testing.assert_array_equal(again.dissimilarities, rdms.dissimilarities)
  np.testing.assert_array_equal(
    again.pattern_descriptors['index'], np.arange(N)
  )
  assert 'nsd_id' not in again.pattern_descriptors

  with pytest.raises(InputError, match='one value per image'):
    interop.to_rsatoolbox(r, nsd_ids=ids[:-1])
  with pytest.raises(InputError, match=r'rdms\[i\]'):
    interop.from_rsatoolbox(rsatoolbox.rdm.concat([rdms, rdms]))


@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
def test_rsatoolbox_calc_rdm_equals_rdmjax(metric):
  """rsatoolbox's RDM of a Dataset, converted, against rdmjax's of the same
  data; both against float64 numpy. rsatoolbox's euclidean is d^2 / D."""
  x = _x()
  ids = np.arange(N) + 1000
  ds = rsatoolbox.data.Dataset(
    x.astype(np.float64), obs_descriptors={'nsd_id': ids}
  )
  theirs = interop.from_rsatoolbox(rsatoolbox.rdm.calc_rdm(ds, metric))
  np.testing.assert_array_equal(theirs.pattern_descriptors['nsd_id'], ids)
  ref = _ref(x, metric)
  assert _err(theirs.matrix, ref) < 1e-12

  ours = np.asarray(rdm_lib.rdm(x, metric), np.float64)
  if metric == 'euclidean':
    ours = ours**2 / D  # rsatoolbox's convention
  assert _err(ours, ref) < 1e-5  # float32 against float64
  assert _err(ours, theirs.matrix) < 1e-5


@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
def test_rsatoolbox_spearman_equals_rdmjax_spearman(metric):
  a = rdm_lib.rdm(_x(seed=1), metric)
  b = rdm_lib.rdm(_x(seed=2), metric)
  ra = interop.to_rsatoolbox(a, measure=metric)
  rb = interop.to_rsatoolbox(b, measure=metric)
  theirs = float(rsatoolbox.rdm.compare(ra, rb, method='spearman')[0, 0])
  ours = compare.compare_rdms(a, b, 'spearman')
  np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
  # And on the RDMs converted back.
  back = compare.compare_rdms(
    interop.from_rsatoolbox(ra).matrix,
    interop.from_rsatoolbox(rb).matrix,
    'spearman',
  )
  np.testing.assert_allclose(back, theirs, rtol=1e-9, atol=1e-12)


def test_missing_rsatoolbox_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, 'rsatoolbox', None)  # import fails
  with pytest.raises(InputError, match='pip install rsatoolbox'):
    interop.to_rsatoolbox(np.zeros(3))


def test_save_load_round_trip(tmp_path):
  x = _x()
  r1 = rdm_lib.rdm(x, 'correlation')
  r2 = np.asarray(rdm_lib.rdm(x, 'euclidean'))
  ids = np.arange(N) * 3
  rdms = {
    'V1 correlation': r1,  # square, jax
    'V1 euclidean': interop.condensed(r2),  # condensed, numpy
  }
  path = tmp_path / 'out' / 'rdms.npz'
  written = interop.save_rdms(
    path,
    rdms,
    nsd_ids=ids,
    metric={'V1 correlation': 'correlation', 'V1 euclidean': 'euclidean'},
    descriptors={'subject': 'subj01', 'split': 'train'},
  )
  assert str(written) == str(path)
  assert [p.name for p in path.parent.iterdir()] == ['rdms.npz']  # no tmp
  got = interop.load_rdms(path)
  assert list(got.rdms) == list(rdms)
  for name, r in rdms.items():
    assert got.rdms[name].dtype == np.float32
    np.testing.assert_array_equal(got.rdms[name], interop.condensed(r))
  assert got.metrics == {
    'V1 correlation': 'correlation',
    'V1 euclidean': 'euclidean',
  }
  np.testing.assert_array_equal(got.nsd_ids, ids)
  np.testing.assert_array_equal(got.index, np.arange(N))
  assert got.descriptors == {'subject': 'subj01', 'split': 'train'}
  np.testing.assert_array_equal(
    squareform(got.rdms['V1 correlation']), np.asarray(r1)
  )

  # Overwritten in place; no NSD ids, one metric for all.
  interop.save_rdms(path, {'a': r2}, metric='euclidean')
  got = interop.load_rdms(path)
  assert got.nsd_ids is None and got.metrics == {'a': 'euclidean'}
  assert sorted(p.name for p in path.parent.iterdir()) == ['rdms.npz']

  with pytest.raises(InputError, match='same images'):
    interop.save_rdms(path, {'a': r2, 'b': r2[:5, :5]})
  with pytest.raises(InputError, match='one value per image'):
    interop.save_rdms(path, {'a': r2}, nsd_ids=ids[:3])
  other = tmp_path / 'other.npz'
  np.savez(other, a=np.zeros(3))
  with pytest.raises(InputError, match='save_rdms'):
    interop.load_rdms(other)
