"""rdmjax.rsa.interop: rsatoolbox conversion both ways, and RDM files.

References are computed independently in float64 numpy. rsatoolbox's
'euclidean' RDM is the squared distance over the number of channels
(`calc_rdm_euclidean`: (|a|^2 + |b|^2 - 2ab) / n_channels); its
'correlation' RDM is 1 - Pearson r, as rdmjax's.
"""

import sys

import jax.numpy as jnp
import numpy as np
import pytest
import rsatoolbox
from scipy import stats
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
  # Two RDMs: .matrices holds both; .matrix is for one and says so.
  two = interop.from_rsatoolbox(rsatoolbox.rdm.concat([rdms, rdms]))
  assert two.matrices.shape == (2, N, N) and two.n_rdm == 2
  np.testing.assert_array_equal(two.matrices[1], np.asarray(r))
  assert two.per_rdm['roi'] == ['V1', 'V1']
  with pytest.raises(InputError, match=r'matrices\[i\]'):
    _ = two.matrix
  assert back.n_rdm == 1 and back.names is None
  np.testing.assert_array_equal(back.matrices[0], back.matrix)


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


K, M = 4, 12  # subjects, images of the several-RDM tests


def _subjects(seed=3):
  """K condensed float64 RDMs of M images, with NaN (missing pairs) at
  random positions, different per RDM; and their NSD ids."""
  rng = np.random.default_rng(seed)
  # float32 values, as rdmjax's RDMs: exact in a jax array too.
  v = rng.random((K, M * (M - 1) // 2)).astype(np.float32).astype(np.float64)
  for i in range(K):
    v[i, rng.choice(v.shape[1], 3, replace=False)] = np.nan
  return v, rng.permutation(1000)[:M]


def _assert_same(a, b):
  """Two rsatoolbox RDMs hold the same values, NaN at the same places
  (rsatoolbox's == takes NaN for unequal), and the same descriptors."""
  np.testing.assert_array_equal(a.dissimilarities, b.dissimilarities)
  assert a.dissimilarity_measure == b.dissimilarity_measure
  assert a.descriptors == b.descriptors
  for x, y in (
    (a.rdm_descriptors, b.rdm_descriptors),
    (a.pattern_descriptors, b.pattern_descriptors),
  ):
    assert list(x) == list(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def _as(kind, v):
  """The K RDMs in one of to_rsatoolbox's forms."""
  square = np.stack([squareform(x, checks=False) for x in v])
  if kind == 'list':  # square and condensed, numpy and jax, mixed
    return [square[0], v[1], jnp.asarray(square[2]), list(v[3])]
  if kind == 'stack':
    return square
  if kind == 'condensed stack':
    return v
  return {f'subj0{i + 1}': (square if i % 2 else v)[i] for i in range(K)}


@pytest.mark.parametrize('kind', ['list', 'stack', 'condensed stack', 'dict'])
def test_several_rdms_both_ways(kind):
  v, ids = _subjects()
  subjects = [f'subj0{i + 1}' for i in range(K)]
  desc = {'roi': ['V1'] * K, 'session': np.arange(K) + 1}
  if kind != 'dict':
    desc['name'] = subjects
  colour = np.array(['red', 'blue'] * (M // 2))
  rdms = interop.to_rsatoolbox(
    _as(kind, v),
    nsd_ids=ids,
    measure='euclidean',
    rdm_descriptors=desc,
    pattern_descriptors={'colour': colour},
    descriptors={'study': 'nsd'},
  )
  assert (rdms.n_rdm, rdms.n_cond) == (K, M)
  np.testing.assert_array_equal(rdms.dissimilarities, v)  # NaN where v's
  assert rdms.rdm_descriptors['name'] == subjects
  assert rdms.rdm_descriptors['roi'] == ['V1'] * K
  np.testing.assert_array_equal(rdms.pattern_descriptors['nsd_id'], ids)
  # rsatoolbox's own subsetting follows the names.
  two = rdms.subset('name', ['subj02', 'subj04'])
  np.testing.assert_array_equal(two.dissimilarities, v[[1, 3]])

  back = interop.from_rsatoolbox(rdms)
  assert back.matrices.shape == (K, M, M)
  assert back.matrices.dtype == np.float64
  for i in range(K):  # exact, NaN at both (i, j) and (j, i)
    np.testing.assert_array_equal(
      back.matrices[i], squareform(v[i], checks=False)
    )
    np.testing.assert_array_equal(interop.condensed(back.matrices[i]), v[i])
  assert back.names == subjects
  assert back.per_rdm['roi'] == ['V1'] * K
  assert back.per_rdm['session'] == [1, 2, 3, 4]
  assert back.per_rdm['index'] == [0, 1, 2, 3]  # rsatoolbox's
  assert back.measure == 'euclidean'
  assert back.descriptors == {'study': 'nsd'}
  np.testing.assert_array_equal(back.pattern_descriptors['nsd_id'], ids)
  np.testing.assert_array_equal(back.pattern_descriptors['colour'], colour)
  np.testing.assert_array_equal(back.pattern_descriptors['index'], range(M))

  # And again: what from_rsatoolbox gives, to_rsatoolbox takes.
  again = interop.to_rsatoolbox(
    back.matrices,
    measure=back.measure,
    rdm_descriptors=back.per_rdm,
    pattern_descriptors=back.pattern_descriptors,
    descriptors=back.descriptors,
  )
  _assert_same(again, rdms)


def test_rsatoolbox_compare_on_several_equals_the_vectors():
  """rsatoolbox.rdm.compare on the converted RDMs, against numpy and scipy
  on the original vectors: a pair NaN in any RDM is left out of all, as
  rsatoolbox does."""
  v, _ = _subjects(seed=4)
  rdms = interop.to_rsatoolbox(list(v))
  keep = ~np.isnan(v).any(0)
  w = v[:, keep]
  refs = {
    'spearman': stats.spearmanr(w, axis=1).statistic,
    'corr': np.corrcoef(w),
    'cosine': (w @ w.T) / np.outer(*2 * [np.linalg.norm(w, axis=1)]),
    'kendall': np.array(
      [[stats.kendalltau(a, b).statistic for b in w] for a in w]
    ),
  }
  for method, ref in refs.items():
    got = rsatoolbox.rdm.compare(rdms, rdms, method=method)
    assert got.shape == (K, K)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
  # Two subjects against all four, cut by rsatoolbox: NaN where any of
  # the six has NaN, in both.
  keep = ~np.isnan(v).any(0)
  pair = rsatoolbox.rdm.RDMs(np.where(keep, v, np.nan))
  got = rsatoolbox.rdm.compare(pair[[0, 2]], rdms, method='spearman')
  np.testing.assert_allclose(got, refs['spearman'][[0, 2]], rtol=1e-12)


def test_one_rdm_forms():
  v, _ = _subjects()
  one = v[0]
  # A square 2-D array is one RDM, with one value per descriptor.
  r = interop.to_rsatoolbox(
    squareform(one, checks=False), rdm_descriptors={'roi': 'V1'}
  )
  assert r.n_rdm == 1 and r.rdm_descriptors['roi'] == ['V1']
  np.testing.assert_array_equal(r.dissimilarities[0], one)
  # So is a list of numbers (one condensed RDM); a list of one RDM, or a
  # [1, m] stack, is a collection: one value in a list per descriptor.
  _assert_same(interop.to_rsatoolbox(list(one)), interop.to_rsatoolbox(one))
  for rdms in ([one], one[None], {'a': one}):
    r = interop.to_rsatoolbox(rdms, rdm_descriptors={'roi': ['V1']})
    assert r.n_rdm == 1 and r.rdm_descriptors['roi'] == ['V1']
    assert interop.from_rsatoolbox(r).rdm_descriptors['roi'] == 'V1'
  assert interop.from_rsatoolbox(r).names == ['a']


def test_malformed_several_rdms_say_which():
  v, ids = _subjects()
  sq = np.stack([squareform(np.nan_to_num(x)) for x in v])
  inf_square = sq[1].copy()
  inf_square[5, 2] = np.inf  # below the diagonal only
  inf_cond = v.copy()
  inf_cond[2, 1] = -np.inf  # pair (0, 2)
  cases = [
    ([v[0], v[1][:36]], r'rdms\[1\] is over 9 images, rdms\[0\] over 12'),
    ({'a': v[0], 'b': sq[1][:5, :5]}, "RDM 'b' is over 5 images"),
    (np.zeros((2, 3, 4)), r'stack shape \(2, 3, 4\).*\[k, n, n\]'),
    (np.zeros((2, 1, 1)), r'stack shape \(2, 1, 1\)'),
    (np.zeros((2, 3, 3, 3)), r'RDM shape \(2, 3, 3, 3\)'),
    ([], 'no RDMs'),
    ({}, 'no RDMs'),
    ([v[0], v[1][:-1]], r'rdms\[1\]: 65 entries are no upper triangle'),
    ([sq[0], inf_square], r'rdms\[1\] holds inf at images \(5, 2\)'),
    (inf_cond, r'rdms\[2\] holds -inf at images \(0, 2\)'),
    (np.full(3, np.inf), r'the RDM holds inf at images \(0, 1\)'),
    ({1: v[0], '1': v[1]}, 'each name once'),
    ([sq[0], sq[1] + np.triu(np.ones((M, M)), 1)], r'rdms\[1\].*symmetric'),
    (np.triu(np.ones((3, 3)), 1), 'pass k condensed RDMs of length k'),
  ]
  for rdms, match in cases:
    with pytest.raises(InputError, match=match) as e:
      interop.to_rsatoolbox(rdms)
    assert '\n' not in str(e.value)
  desc_cases = [
    (dict(rdm_descriptors={'roi': ['V1'] * 3}), "'roi' has 3 values for 4"),
    (dict(rdm_descriptors={'roi': 'V1'}), "'roi' is 'V1': pass 4 values"),
    (dict(rdm_descriptors={'s': 2}), "'s' is 2: pass 4 values"),
    (dict(nsd_ids=ids[:-1]), r'nsd_ids shape \(11,\)'),
    (
      dict(pattern_descriptors={'colour': ['red'] * 13}),
      r"'colour' shape \(13,\): pass one value per image \(12\)",
    ),
    (
      dict(index=range(M), pattern_descriptors={'index': range(M)}),
      "'index' given twice",
    ),
  ]
  for kwargs, match in desc_cases:
    with pytest.raises(InputError, match=match) as e:
      interop.to_rsatoolbox(v, **kwargs)
    assert '\n' not in str(e.value)
  with pytest.raises(InputError, match="'name' given twice"):
    interop.to_rsatoolbox({'a': v[0]}, rdm_descriptors={'name': ['b']})

  # From rsatoolbox: not an RDMs; an inf in the RDMs, named.
  with pytest.raises(InputError, match='pass an rsatoolbox.rdm.RDMs'):
    interop.from_rsatoolbox(v)
  bad = rsatoolbox.rdm.RDMs(inf_cond, rdm_descriptors={'name': list('abcd')})
  with pytest.raises(InputError, match=r"RDM 'c' holds -inf at images"):
    interop.from_rsatoolbox(bad)


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

  # Several RDMs with NaN: saved, read back and handed to rsatoolbox whole.
  v, ids = _subjects()
  interop.save_rdms(path, dict(zip('abcd', v)), nsd_ids=ids, metric='corr')
  got = interop.load_rdms(path)
  rdms = interop.to_rsatoolbox(
    got.rdms,
    nsd_ids=got.nsd_ids,
    rdm_descriptors={'metric': list(got.metrics.values())},
  )
  np.testing.assert_array_equal(rdms.dissimilarities, v)
  assert rdms.rdm_descriptors['name'] == list('abcd')

  with pytest.raises(InputError, match='same images'):
    interop.save_rdms(path, {'a': r2, 'b': r2[:5, :5]})
  with pytest.raises(InputError, match='one value per image'):
    interop.save_rdms(path, {'a': r2}, nsd_ids=ids[:3])
  other = tmp_path / 'other.npz'
  np.savez(other, a=np.zeros(3))
  with pytest.raises(InputError, match='save_rdms'):
    interop.load_rdms(other)
