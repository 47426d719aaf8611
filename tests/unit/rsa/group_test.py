"""rdmjax.rsa.group against brute force, scipy and rsatoolbox.

References: Python set intersections for the shared images, scipy's
`spearmanr` on upper triangles for the consistency matrices, rsatoolbox's
`boot_noise_ceiling` (and `pool_rdm` + `compare` per left-out subject) for
the noise ceiling, scipy's `sem` and `t.interval` for the summary.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from rdmjax.errors import InputError
from rdmjax.rsa import group
from rdmjax.rsa import rdm as rdm_lib


def _sym(rng, n, dtype=np.float32, levels=None):
  """A random symmetric [n, n] RDM with a zero diagonal."""
  m = rng.random((n, n))
  if levels:
    m = np.floor(m * levels)  # many ties
  m = np.triu(m, 1)
  return (m + m.T).astype(dtype)


def _tri(r):
  r = np.asarray(r)
  return r[np.triu_indices(r.shape[0], 1)]


# shared_images


def test_shared_images_toy():
  ids = {
    'a': np.array([5, 3, 9, 1]),
    'b': np.array([9, 1, 7, 3, 2]),
    'c': np.array([3, 9, 0, 1, 8]),
  }
  common, rows = group.shared_images(ids)
  np.testing.assert_array_equal(common, [1, 3, 9])
  assert list(rows) == ['a', 'b', 'c']
  np.testing.assert_array_equal(rows['a'], [3, 1, 2])
  np.testing.assert_array_equal(rows['b'], [1, 3, 0])
  np.testing.assert_array_equal(rows['c'], [3, 0, 1])
  common, rows = group.shared_images(ids, ['b', 'a'])
  np.testing.assert_array_equal(common, [1, 3, 9])
  assert list(rows) == ['b', 'a']
  common, rows = group.shared_images({'a': np.array([4, 2])})
  np.testing.assert_array_equal(common, [2, 4])
  np.testing.assert_array_equal(rows['a'], [1, 0])
  common, rows = group.shared_images({'a': [1, 2], 'b': [3]})
  assert common.size == 0 and rows['a'].size == 0 and rows['b'].size == 0


def test_shared_images_brute_force():
  rng = np.random.default_rng(0)
  ids = {
    f'subj0{k}': rng.permutation(300)[: rng.integers(150, 250)]
    for k in range(1, 6)
  }
  common, rows = group.shared_images(ids)
  want = sorted(set.intersection(*(set(v.tolist()) for v in ids.values())))
  np.testing.assert_array_equal(common, want)
  assert common.dtype == np.int64
  for s, v in ids.items():
    np.testing.assert_array_equal(v[rows[s]], common)


@pytest.mark.parametrize(
  'ids, subjects',
  [
    ({'a': np.array([1, 2, 2])}, None),  # a repeated id
    ({'a': np.array([[1, 2]])}, None),  # not 1-D
    ({'a': np.array([1.5, 2.0])}, None),  # not integers
    ({'a': np.array([1, 2])}, ['b']),  # unknown subject
    ({'a': np.array([1, 2])}, []),  # none
  ],
)
def test_shared_images_bad_input(ids, subjects):
  with pytest.raises(InputError):
    group.shared_images(ids, subjects)


# intersubject_consistency


def test_intersubject_consistency_against_scipy():
  rng = np.random.default_rng(1)
  base = _sym(rng, 25, np.float64)
  rdms = {
    f's{k}': (base + 0.5 * k * _sym(rng, 25, np.float64)).astype(np.float32)
    for k in range(4)
  }
  rdms['s3'] = _sym(rng, 25, levels=5)  # ties
  out = group.intersubject_consistency(rdms)
  names = list(rdms)
  assert out['subjects'] == names and out['method'] == 'spearman'
  want = np.eye(4)
  for i, a in enumerate(names):
    for j, b in enumerate(names):
      if i != j:
        want[i, j] = stats.spearmanr(_tri(rdms[a]), _tri(rdms[b]))[0]
  np.testing.assert_allclose(out['matrix'], want, atol=1e-12)
  assert out['mean'] == pytest.approx(want[np.triu_indices(4, 1)].mean())
  # Condensed triangles give the same; Pearson as scipy's pearsonr.
  cond = group.intersubject_consistency({s: _tri(r) for s, r in rdms.items()})
  np.testing.assert_allclose(cond['matrix'], want, atol=1e-12)
  p = group.intersubject_consistency(rdms, method='pearson')['matrix']
  assert p[0, 1] == pytest.approx(
    stats.pearsonr(_tri(rdms['s0']), _tri(rdms['s1']))[0], abs=1e-6
  )


def test_intersubject_consistency_bad_input():
  rng = np.random.default_rng(2)
  with pytest.raises(InputError):
    group.intersubject_consistency({'a': _sym(rng, 5), 'b': _sym(rng, 6)})
  with pytest.raises(InputError):
    group.intersubject_consistency({'a': _sym(rng, 5)})
  with pytest.raises(InputError):
    group.intersubject_consistency(
      {'a': _sym(rng, 5), 'b': _sym(rng, 5)}, method='nope'
    )


# pairwise_consistency


def test_pairwise_consistency_brute_force():
  rng = np.random.default_rng(3)
  shared = np.arange(12)  # all three share 12 images
  ids = {
    'a': rng.permutation(np.r_[shared, 100 + np.arange(10), 200]),
    'b': rng.permutation(np.r_[shared, 100 + np.arange(10), 300, 301]),
    'c': rng.permutation(np.r_[shared[:5], 400 + np.arange(8)]),
  }
  signal = rng.standard_normal((500, 6))  # per NSD id
  resp = {
    s: signal[v] @ rng.standard_normal((6, 9))
    + rng.standard_normal((v.size, 9))
    for s, v in ids.items()
  }
  out = group.pairwise_consistency(resp, ids, min_images=6)
  assert out['subjects'] == ['a', 'b', 'c']
  # a and b share 22 images, more than the 5 that all three share.
  want_n = np.array([[23, 22, 5], [22, 24, 5], [5, 5, 13]])
  np.testing.assert_array_equal(out['n_images'], want_n)
  common = sorted(set(ids['a'].tolist()) & set(ids['b'].tolist()))
  ra = [ids['a'].tolist().index(i) for i in common]
  rb = [ids['b'].tolist().index(i) for i in common]
  da = rdm_lib.rdm(resp['a'][ra], 'correlation')
  db = rdm_lib.rdm(resp['b'][rb], 'correlation')
  want = stats.spearmanr(_tri(da), _tri(db))[0]
  assert out['matrix'][0, 1] == pytest.approx(want, abs=1e-12)
  assert out['matrix'][1, 0] == out['matrix'][0, 1]
  assert np.isnan(out['matrix'][0, 2]) and np.isnan(out['matrix'][1, 2])
  assert set(out['skipped']) == {('a', 'c'), ('b', 'c')}
  assert 'min_images=6' in out['skipped'][('a', 'c')]
  np.testing.assert_array_equal(np.diag(out['matrix']), 1.0)
  assert out['mean'] == pytest.approx(want)
  # With min_images=5 the (a, c) pair is scored on its 5 shared images.
  five = group.pairwise_consistency(resp, ids, 'euclidean', min_images=5)
  assert not five['skipped']
  rows_a = [ids['a'].tolist().index(i) for i in range(5)]
  rows_c = [ids['c'].tolist().index(i) for i in range(5)]
  want = stats.spearmanr(
    _tri(rdm_lib.rdm(resp['a'][rows_a], 'euclidean')),
    _tri(rdm_lib.rdm(resp['c'][rows_c], 'euclidean')),
  )[0]
  assert five['matrix'][0, 2] == pytest.approx(want, abs=1e-12)


def test_pairwise_consistency_bad_input():
  x = np.ones((4, 3))
  with pytest.raises(InputError, match='ids for'):
    group.pairwise_consistency({'a': x, 'b': x}, {'a': np.arange(4)})
  with pytest.raises(InputError, match='one id per row'):
    group.pairwise_consistency(
      {'a': x, 'b': x}, {'a': np.arange(4), 'b': np.arange(3)}
    )
  with pytest.raises(InputError, match='metric'):
    group.pairwise_consistency(
      {'a': x, 'b': x}, {'a': np.arange(4), 'b': np.arange(4)}, 'bad'
    )


# noise_ceiling


def _rsa_rdms(vecs):
  from rsatoolbox.rdm import RDMs

  return RDMs(np.stack(vecs))


@pytest.mark.parametrize(
  'method', ['spearman', 'corr', 'cosine', 'tau-a', 'tau-b', 'rho-a']
)
@pytest.mark.parametrize('levels', [None, 4])
def test_noise_ceiling_matches_rsatoolbox(method, levels):
  from rsatoolbox.inference import boot_noise_ceiling
  from rsatoolbox.rdm import compare
  from rsatoolbox.util.inference_util import pool_rdm

  rng = np.random.default_rng(4)
  base = _sym(rng, 20, np.float64)
  rdms = {}
  for k in range(5):
    r = base + 0.8 * _sym(rng, 20, np.float64)
    rdms[f'subj0{k + 1}'] = np.floor(r * levels) if levels else r
  vecs = [_tri(r) for r in rdms.values()]
  lo, hi = boot_noise_ceiling(_rsa_rdms(vecs), method=method)
  out = group.noise_ceiling(rdms, method=method)
  assert out['lower'] == pytest.approx(lo, abs=1e-10)
  assert out['upper'] == pytest.approx(hi, abs=1e-10)
  assert 0 < out['lower'] < out['upper'] <= 1
  pooled = pool_rdm(_rsa_rdms(vecs), method=method)
  for i, s in enumerate(rdms):
    test = _rsa_rdms([vecs[i]])
    others = _rsa_rdms([v for j, v in enumerate(vecs) if j != i])
    want_lo = compare(pool_rdm(others, method=method), test, method)[0, 0]
    want_hi = compare(pooled, test, method)[0, 0]
    assert out['per_subject_lower'][s] == pytest.approx(want_lo, abs=1e-10)
    assert out['per_subject_upper'][s] == pytest.approx(want_hi, abs=1e-10)
  if method == 'corr':
    alias = group.noise_ceiling(rdms, method='pearson')
    assert alias['lower'] == pytest.approx(out['lower'], abs=1e-15)
  # A list or a stack of the same RDMs: the same bounds, subjects 0..k-1.
  stack = np.stack(list(rdms.values()))
  for given in (list(rdms.values()), stack, np.stack(vecs)):
    again = group.noise_ceiling(given, method=method)
    assert again['lower'] == pytest.approx(out['lower'], abs=1e-14)
    assert list(again['per_subject_lower']) == list(range(5))


@pytest.mark.parametrize('method', ['spearman', 'corr', 'cosine', 'tau-a'])
def test_noise_ceiling_with_missing_pairs_matches_rsatoolbox(method):
  """NaN at the same random pairs in every subject: left out, as
  rsatoolbox."""
  from rsatoolbox.inference import boot_noise_ceiling

  rng = np.random.default_rng(14)
  base = _tri(_sym(rng, 24, np.float64))
  vecs = [base + 0.7 * _tri(_sym(rng, 24, np.float64)) for _ in range(4)]
  gone = rng.choice(base.size, 30, replace=False)
  for v in vecs:
    v[gone] = np.nan
  lo, hi = boot_noise_ceiling(_rsa_rdms(vecs), method=method)
  out = group.noise_ceiling(vecs, method=method)
  assert out['lower'] == pytest.approx(lo, abs=1e-10)
  assert out['upper'] == pytest.approx(hi, abs=1e-10)
  assert out['n_pairs'] == {k: base.size - 30 for k in range(4)}
  # Different pairs missing: one line, or pooled per pair when asked.
  vecs[0][np.flatnonzero(np.isfinite(vecs[0]))[:3]] = np.nan
  with pytest.raises(InputError, match='different pairs.*drop_union'):
    group.noise_ceiling(vecs, method=method)
  out = group.noise_ceiling(vecs, method=method, nan='drop_union')
  assert out['n_pairs'][0] == base.size - 33
  assert 0 < out['lower'] < out['upper'] <= 1


def test_cka_noise_ceiling_brute_force():
  """CKA pools the RDMs over their centred norms: the pooled centred
  kernel is the mean of the unit kernels."""
  rng = np.random.default_rng(15)
  n = 15
  x = rng.standard_normal((n, 6))
  rdms = [
    squareform(pdist(x + 0.5 * rng.standard_normal(x.shape), 'sqeuclidean'))
    * (1 + k)
    for k in range(3)
  ]
  h = np.eye(n) - 1 / n

  def kernel(d):
    g = h @ d @ h
    return g / np.linalg.norm(g)

  out = group.noise_ceiling(rdms, 'cka')
  for k, d in enumerate(rdms):
    others = np.mean([kernel(e) for j, e in enumerate(rdms) if j != k], 0)
    every = np.mean([kernel(e) for e in rdms], 0)
    want_lo = np.sum(kernel(d) * others) / np.linalg.norm(others)
    want_hi = np.sum(kernel(d) * every) / np.linalg.norm(every)
    assert out['per_subject_lower'][k] == pytest.approx(want_lo, abs=1e-12)
    assert out['per_subject_upper'][k] == pytest.approx(want_hi, abs=1e-12)


def test_noise_ceiling_spearman_brute_force():
  """The Spearman bounds as defined: rank, average, compare ranks."""
  rng = np.random.default_rng(5)
  rdms = {k: _sym(rng, 12, levels=6) for k in 'abcd'}
  out = group.noise_ceiling(rdms)
  ranks = {k: stats.rankdata(_tri(r)) for k, r in rdms.items()}
  for k in rdms:
    mean_all = np.mean(list(ranks.values()), 0)
    mean_others = np.mean([r for j, r in ranks.items() if j != k], 0)
    hi = stats.spearmanr(_tri(rdms[k]), mean_all)[0]
    lo = stats.spearmanr(_tri(rdms[k]), mean_others)[0]
    assert out['per_subject_upper'][k] == pytest.approx(hi, abs=1e-12)
    assert out['per_subject_lower'][k] == pytest.approx(lo, abs=1e-12)


def test_noise_ceiling_bad_input():
  rng = np.random.default_rng(6)
  with pytest.raises(InputError, match='at least two'):
    group.noise_ceiling({'a': _sym(rng, 5)})
  with pytest.raises(InputError, match='same images'):
    group.noise_ceiling({'a': _sym(rng, 5), 'b': _sym(rng, 6)})
  with pytest.raises(InputError, match='unknown'):
    group.noise_ceiling({'a': _sym(rng, 5), 'b': _sym(rng, 5)}, 'tau-c')
  bad = _sym(rng, 5)
  bad[0, 1] = np.inf
  with pytest.raises(InputError, match='inf'):
    group.noise_ceiling({'a': bad, 'b': _sym(rng, 5)})
  with pytest.raises(InputError, match='at least two'):
    group.noise_ceiling(_sym(rng, 5))  # one RDM, not a stack


# mean_sem


def test_mean_sem_against_scipy():
  vals = {'s1': 0.31, 's2': 0.2, 's3': None, 's4': 0.45, 's5': float('nan')}
  vals['s6'] = np.float32(0.38)
  out = group.mean_sem(vals)
  x = np.array([0.31, 0.2, 0.45, float(np.float32(0.38))])
  assert out['n'] == 4 and out['n_excluded'] == 2
  assert out['excluded'] == ['s3', 's5']
  assert list(out['values']) == ['s1', 's2', 's4', 's6']
  assert out['mean'] == pytest.approx(x.mean(), abs=1e-15)
  assert out['sem'] == pytest.approx(stats.sem(x), abs=1e-15)
  lo, hi = stats.t.interval(0.95, 3, loc=x.mean(), scale=stats.sem(x))
  assert out['ci_low'] == pytest.approx(lo, abs=1e-14)
  assert out['ci_high'] == pytest.approx(hi, abs=1e-14)
  lo, hi = stats.t.interval(0.9, 3, loc=x.mean(), scale=stats.sem(x))
  assert group.mean_sem(vals, 0.9)['ci_low'] == pytest.approx(lo, abs=1e-14)


def test_mean_sem_small_and_bad():
  one = group.mean_sem({'a': 0.5, 'b': None})
  assert one['mean'] == 0.5 and one['n'] == 1
  assert np.isnan(one['sem']) and np.isnan(one['ci_low'])
  none = group.mean_sem({})
  assert none['n'] == 0 and np.isnan(none['mean'])
  same = group.mean_sem({'a': 0.2, 'b': 0.2})
  assert same['sem'] == 0 and same['ci_low'] == same['ci_high'] == 0.2
  with pytest.raises(InputError):
    group.mean_sem({'a': 'x'})
  with pytest.raises(InputError):
    group.mean_sem({'a': 1.0}, confidence=1.5)


# transfer_matrix


def test_transfer_matrix():
  def score(train, test):
    if (train, test) == ('b', 'c'):
      raise RuntimeError('no model for b')
    if (train, test) == ('c', 'a'):
      return None
    return 10 * ord(train) + ord(test)

  names, scores, errors = group.transfer_matrix(score, ['a', 'b', 'c'])
  assert names == ['a', 'b', 'c']
  assert scores.shape == (3, 3) and scores.dtype == np.float64
  for i, a in enumerate(names):
    for j, b in enumerate(names):
      if (a, b) in (('b', 'c'), ('c', 'a')):
        assert np.isnan(scores[i, j])
      else:
        assert scores[i, j] == 10 * ord(a) + ord(b)
  assert errors[('b', 'c')] == 'RuntimeError: no model for b'
  assert errors[('c', 'a')].startswith('TypeError')
  assert set(errors) == {('b', 'c'), ('c', 'a')}
  with pytest.raises(InputError):
    group.transfer_matrix(score, ['a', 'a'])


def test_consistency_bootstrap_brute_force():
  """Each draw: every Spearman of the expanded multiset (pair (i, j) c_i
  c_j times) by scipy, averaged as the consistency mean and both bounds."""
  from rdmjax.rsa import inference as rstats

  rng = np.random.default_rng(6)
  n, n_boot = 9, 5
  base = _sym(rng, n, np.float64)
  rdms = {k: base + 0.7 * _sym(rng, n, np.float64) for k in 'abc'}
  out = group.consistency_bootstrap(rdms, n_boot=n_boot, seed=3)
  cons = group.intersubject_consistency(rdms)
  nc = group.noise_ceiling(rdms)
  assert out['mean']['value'] == pytest.approx(cons['mean'], abs=1e-6)
  assert out['lower']['value'] == pytest.approx(nc['lower'], abs=1e-6)
  assert out['upper']['value'] == pytest.approx(nc['upper'], abs=1e-6)
  counts = rstats.bootstrap_counts(n, n_boot, 3)
  i, j = np.triu_indices(n, 1)
  v = {k: _tri(r) for k, r in rdms.items()}
  rank_sum = sum(stats.rankdata(x) for x in v.values())
  want = {'mean': [], 'lower': [], 'upper': []}
  for c in counts:
    w = c[i] * c[j]

    def rho(a, b, w=w):
      return stats.spearmanr(np.repeat(a, w), np.repeat(b, w))[0]

    names = list(v)
    want['mean'].append(
      np.mean(
        [rho(v[s], v[t]) for a, s in enumerate(names) for t in names[a + 1 :]]
      )
    )
    want['lower'].append(
      np.mean([rho(v[s], rank_sum - stats.rankdata(v[s])) for s in names])
    )
    want['upper'].append(np.mean([rho(v[s], rank_sum) for s in names]))
  for key, draws in want.items():
    lo, hi = rstats.interval(draws)
    assert out[key]['low'] == pytest.approx(lo, abs=1e-5), key
    assert out[key]['high'] == pytest.approx(hi, abs=1e-5), key
    assert out[key]['sd'] == pytest.approx(np.std(draws, ddof=1), abs=1e-5)
  with pytest.raises(InputError, match='at least two'):
    group.consistency_bootstrap({'a': rdms['a']})


def test_cosine_ceiling_of_a_zero_rdm_is_zero_as_compare_rdms():
  """One cosine in rdmjax (rsatoolbox's): 0 where an RDM is all zeros."""
  from rdmjax.rsa import compare

  rng = np.random.default_rng(3)
  rdms = {'a': np.zeros(45), 'b': rng.random(45), 'c': rng.random(45)}
  got = group.noise_ceiling(rdms, 'cosine')
  assert got['per_subject_lower']['a'] == 0.0
  pooled = rdms['b'] / np.sqrt((rdms['b'] ** 2).mean()) + rdms['c'] / np.sqrt(
    (rdms['c'] ** 2).mean()
  )
  assert compare.compare_rdms(rdms['a'], pooled, 'cosine') == 0.0
  # The other subjects' bounds stay numbers (the zero RDM pools as zeros).
  assert np.isfinite(got['lower']) and np.isfinite(got['upper'])
  want = compare.compare_rdms(rdms['b'], pooled, 'cosine')
  assert got['per_subject_upper']['b'] == pytest.approx(want, abs=1e-6)
