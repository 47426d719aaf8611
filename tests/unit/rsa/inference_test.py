"""rdmjax.rsa.inference and exact Spearman (rdmjax.rsa.compare) against references.

References: resampled image lists expanded pair by pair with numpy and
scored by scipy in float64; rsatoolbox's `subsample_pattern` (its bootstrap)
with its `compare`; sklearn's r2_score; a scipy loop over the same
permutations.
"""

import importlib
import itertools

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import r2_score

from rdmjax.errors import InputError
from rdmjax.rsa import _weighted, compare
from rdmjax.rsa import inference as rstats
from rdmjax.rsa import rdm as kernels

M = 14  # images of the small bootstrap cases


def _pairs(m=M, keep=0.7, seed=0):
  """A hashed-like subset of the pairs i < j of m images, with values."""
  rng = np.random.default_rng(seed)
  i, j = np.triu_indices(m, 1)
  sel = rng.random(i.size) < keep
  i, j = i[sel], j[sel]
  t = np.round(rng.standard_normal(i.size), 1)  # ties
  preds = {
    'model': np.round(t + rng.standard_normal(i.size), 1),
    'noise': rng.standard_normal(i.size),
    'ceiling': t + 0.1 * rng.standard_normal(i.size),
    'perfect': t.copy(),  # r2 = 1, ties equal to the target's
  }
  return i, j, t, preds


def _expand(i, j, values, sample):
  """Brute force: every pair of positions u < v of the resampled image list
  whose images form a scored pair (copies of one image left out)."""
  where = {(a, b): q for q, (a, b) in enumerate(zip(i, j))}
  rows = []
  for u, v in itertools.combinations(range(len(sample)), 2):
    a, b = sorted((sample[u], sample[v]))
    if a != b and (a, b) in where:
      rows.append(where[(a, b)])
  return [np.asarray(x)[rows] for x in values]


def _reference(pred, target):
  return {
    'spearman': stats.spearmanr(pred, target)[0],
    'pearson': stats.pearsonr(pred, target)[0],
    'r2': 1
    - np.sum((target - pred) ** 2) / np.sum((target - target.mean()) ** 2),
  }


def test_bootstrap_counts_resample_images():
  c = rstats.bootstrap_counts(50, 200, seed=4)
  assert c.shape == (200, 50) and c.dtype == np.int32
  np.testing.assert_array_equal(c.sum(1), 50)  # n images drawn per draw
  np.testing.assert_array_equal(c, rstats.bootstrap_counts(50, 200, seed=4))
  assert not np.array_equal(c, rstats.bootstrap_counts(50, 200, seed=5))
  # Multinomial(n, 1/n): mean 1, P(image absent) ~ (1 - 1/n)^n ~ 0.364.
  assert abs(c.mean() - 1) < 1e-12 and abs((c == 0).mean() - 0.364) < 0.02


def test_weighted_stats_equal_expanded_resampled_pairs():
  i, j, t, preds = _pairs()
  counts = rstats.bootstrap_counts(M, 12, seed=1)
  got = rstats.weighted_pair_stats(i, j, preds, t, counts)
  for b in range(len(counts)):
    sample = np.repeat(np.arange(M), counts[b])  # the resampled images
    for name, p in preds.items():
      pe, te = _expand(i, j, (p, t), sample)
      want = _reference(pe, te)
      for s, v in want.items():
        assert got[name][s][b] == pytest.approx(v, abs=2e-6), (b, name, s)


def test_weighted_stats_accurate_at_many_pairs():
  """5e4 pairs with ties: float32 draws within 1e-6 of float64 scipy."""
  rng = np.random.default_rng(2)
  m = 400
  i, j = np.triu_indices(m, 1)
  sel = rng.choice(i.size, 50_000, replace=False)
  i, j = i[sel], j[sel]
  t = np.round(rng.standard_normal(i.size), 2)
  p = np.round(t + 2 * rng.standard_normal(i.size), 1)
  counts = rstats.bootstrap_counts(m, 2, seed=3)
  got = rstats.weighted_pair_stats(i, j, {'p': p}, t, counts)
  for b in range(2):
    w = counts[b][i] * counts[b][j]
    want = _reference(np.repeat(p, w), np.repeat(t, w))
    for s, v in want.items():
      assert got['p'][s][b] == pytest.approx(v, rel=1e-6, abs=1e-6), (b, s)


def test_weighted_stats_accurate_with_two_tie_groups():
  """A categorical model RDM (same or different category: two tie groups of
  ~2000 pairs) against a tied target, each as the target: the centred rank
  sums cancel within each group. Draws and the original images within 1e-6
  of float64 scipy (a float32 reduce was up to 4.8e-6 off on an EPYC)."""
  rng = np.random.default_rng(5)
  m = 120
  i, j = np.triu_indices(m, 1)
  sel = np.sort(rng.choice(i.size, 4000, replace=False))
  i, j = i[sel], j[sel]
  labels = rng.integers(0, 2, m)
  category = (labels[i] != labels[j]).astype(np.float64)
  t = np.round(0.5 * category + rng.standard_normal(i.size), 1)
  assert 1500 < category.sum() < 2500
  counts = np.concatenate(
    [np.ones((1, m), np.int32), rstats.bootstrap_counts(m, 8, seed=4)]
  )
  for pred, target in ((category, t), (t, category)):
    got = rstats.weighted_pair_stats(i, j, {'p': pred}, target, counts)
    for b in range(len(counts)):
      w = counts[b][i] * counts[b][j]
      want = _reference(np.repeat(pred, w), np.repeat(target, w))
      for s, v in want.items():
        assert got['p'][s][b] == pytest.approx(v, rel=1e-6, abs=1e-6), (b, s)


def test_sum_does_not_depend_on_the_reduce_order():
  """`_sum` recovers what a float32 add drops in any order: 2^25 plus 4096
  ones (a quarter ulp each) sums exactly; a plain float32 reduce loses the
  ones it adds onto the big partial sum."""
  n = 4097  # groups of 8 after the three halvings
  x = np.zeros((2, 8 * n), np.float32)
  x[:, :n] = 1.0
  x[:, 0] = 2.0**25
  x[1] = x[1, ::-1]
  got = np.asarray(_weighted._sum(jnp.asarray(x)), np.float64)
  np.testing.assert_array_equal(got, 2.0**25 + 4096)
  assert np.cumsum(x[0])[-1] != 2.0**25 + 4096  # a sequential float32 sum


def test_draws_match_rsatoolbox_subsample_pattern():
  """All pairs of the images: a draw equals rsatoolbox's bootstrap RDMs
  (`subsample_pattern` by index, same-image pairs NaN) compared by it."""
  rdm = importlib.import_module('rsatoolbox.rdm')
  rng = np.random.default_rng(6)
  m = 10
  i, j = np.triu_indices(m, 1)
  t = rng.standard_normal(i.size)
  p = t + rng.standard_normal(i.size)
  counts = rstats.bootstrap_counts(m, 5, seed=2)
  got = rstats.weighted_pair_stats(i, j, {'p': p}, t, counts)
  both = rdm.RDMs(np.stack([p, t]))
  for b in range(5):
    sub = both.subsample_pattern('index', np.repeat(np.arange(m), counts[b]))
    for ours, theirs in (('spearman', 'spearman'), ('pearson', 'corr')):
      want = rdm.compare(sub[0], sub[1], method=theirs)[0, 0]
      assert got['p'][ours][b] == pytest.approx(want, abs=2e-6)


def test_bootstrap_pair_scores_summaries():
  i, j, t, preds = _pairs()
  out = rstats.bootstrap_pair_scores(
    i, j, preds, t, M, n_boot=300, seed=0, ceiling='ceiling'
  )
  assert set(out) == set(preds)
  assert 'fraction_of_ceiling' not in out['ceiling']
  for name, p in preds.items():
    # 'value' is on the original pairs: scipy / sklearn.
    want = _reference(p, t)
    want['r2'] = r2_score(t, p)
    for s in rstats.PAIR_STATS:
      r = out[name][s]
      assert r['value'] == pytest.approx(want[s], abs=2e-6), (name, s)
      assert r['samples'].shape == (300,)
      assert r['low'] <= np.nanmedian(r['samples']) <= r['high']
      assert r['sd'] >= 0
  assert out['perfect']['r2']['low'] == out['perfect']['r2']['high'] == 1.0
  model = out['model']
  # Draws are paired: fraction of ceiling is a ratio within each draw.
  np.testing.assert_allclose(
    model['fraction_of_ceiling']['samples'],
    model['spearman']['samples'] / out['ceiling']['spearman']['samples'],
  )
  assert model['fraction_of_ceiling']['value'] == pytest.approx(
    model['spearman']['value'] / out['ceiling']['spearman']['value']
  )
  # Same seed, same draws: the same samples in a second call (to float32
  # rounding: fewer predictions, another compiled program).
  again = rstats.bootstrap_pair_scores(
    i, j, {'model': preds['model']}, t, M, n_boot=300, seed=0
  )
  np.testing.assert_allclose(
    again['model']['spearman']['samples'],
    model['spearman']['samples'],
    rtol=0,
    atol=1e-6,
  )
  d = rstats.paired_difference(out, 'ceiling', 'model')
  np.testing.assert_allclose(
    d['samples'],
    out['ceiling']['spearman']['samples'] - model['spearman']['samples'],
  )
  assert d['low'] > 0  # the ceiling beats the model in nearly every draw
  with pytest.raises(InputError, match='fraction_of_ceiling'):
    rstats.paired_difference(out, 'ceiling', 'model', 'fraction_of_ceiling')
  with pytest.raises(InputError, match='ceiling'):
    rstats.bootstrap_pair_scores(i, j, preds, t, M, n_boot=2, ceiling='x')


def test_interval_and_differences():
  s = np.r_[np.arange(1001.0), np.nan]
  assert rstats.interval(s) == pytest.approx((25, 975))  # NaN ignored
  low90, high90 = rstats.interval(s, 0.9)
  assert 25 < low90 < high90 < 975
  assert np.isnan(rstats.interval([np.nan])[0])
  with pytest.raises(InputError, match='level'):
    rstats.interval(s, 95)
  a, b = np.arange(10.0), np.ones(10)
  d = rstats.difference_interval(a, b, value=3.0)
  np.testing.assert_array_equal(d['samples'], a - b)
  assert d['value'] == 3.0 and d['low'] < d['high']
  with pytest.raises(InputError, match='same length'):
    rstats.difference_interval(a, b[:-1])


def test_intervals_cover_the_truth():
  """Bootstrap over images of a population of images: the 90% interval of
  Spearman covers the population value in most of 20 samples (loose)."""
  rng = np.random.default_rng(0)
  pop = rng.standard_normal((4000, 3))
  truth, covered = None, 0
  for rep in range(20):
    x = pop[rng.choice(len(pop), 40, replace=False)]
    y = x + 1.5 * rng.standard_normal(x.shape)
    i, j = np.triu_indices(40, 1)
    t, p = pdist(x), pdist(y)
    if truth is None:
      xp = pop[:1200]
      yp = xp + 1.5 * np.random.default_rng(9).standard_normal(xp.shape)
      truth = stats.spearmanr(pdist(xp), pdist(yp))[0]
    r = rstats.bootstrap_pair_scores(
      i, j, {'p': p}, t, 40, n_boot=200, seed=rep, level=0.9
    )['p']['spearman']
    covered += r['low'] <= truth <= r['high']
  assert covered >= 14  # nominal 18 of 20; the image bootstrap is wide


def test_bad_pair_inputs():
  i, j, t, preds = _pairs()
  with pytest.raises(InputError, match='i < j'):
    rstats.weighted_pair_stats(j, i, preds, t, np.ones((1, M)))
  with pytest.raises(InputError, match='one length'):
    rstats.weighted_pair_stats(i, j, {'p': t[:-1]}, t, np.ones((1, M)))
  with pytest.raises(InputError, match='counts'):
    rstats.weighted_pair_stats(i, j, preds, t, np.full((1, M), 64))


def _perm_reference(a, b, perms, method):
  f = stats.spearmanr if method == 'spearman' else stats.pearsonr
  vb = squareform(b, checks=False)
  obs = f(squareform(a, checks=False), vb)[0]
  null = np.array(
    [f(squareform(a[p][:, p], checks=False), vb)[0] for p in perms]
  )
  return obs, null


@pytest.mark.parametrize('method', ['spearman', 'pearson'])
def test_permutation_test_vs_scipy_loop(method):
  rng = np.random.default_rng(1)
  n, n_perm = 25, 300
  x = rng.standard_normal((n, 4))
  a = squareform(pdist(x))
  b = squareform(np.round(pdist(x + 2.5 * rng.standard_normal(x.shape)), 1))
  got = rstats.permutation_test(a, b, n_perm=n_perm, seed=3, method=method)
  obs, null = _perm_reference(a, b, rstats._permutations(n, n_perm, 3), method)
  assert np.min(np.abs(null - obs)) > 1e-5  # no near-tie with the observed
  assert got['value'] == pytest.approx(obs, abs=1e-12)
  np.testing.assert_allclose(got['null'], null, rtol=0, atol=1e-6)
  assert got['p'] == (1 + np.sum(null >= obs)) / (1 + n_perm)
  # The fixture's own check: a weak effect, so some permutations reach the
  # observed value and some do not, and the count above is exercised
  # (p at either extreme would pass it with a wrong comparison too).
  assert 1 / (n_perm + 1) < got['p'] < 1


def test_permutation_test_strong_and_null_effects():
  rng = np.random.default_rng(2)
  n = 30
  x = rng.standard_normal((n, 5))
  a = squareform(pdist(x))
  strong = squareform(pdist(x + 0.3 * rng.standard_normal(x.shape)))
  assert rstats.permutation_test(a, strong, n_perm=199)['p'] == 1 / 200
  # Independent RDMs: p-values roughly uniform.
  ps = []
  for rep in range(30):
    y = rng.standard_normal((10, 3))
    z = rng.standard_normal((10, 3))
    r = rstats.permutation_test(
      squareform(pdist(y)), squareform(pdist(z)), n_perm=99, seed=rep
    )
    ps.append(r['p'])
  ps = np.array(ps)
  assert ps.max() > 0.05 and 0.3 < ps.mean() < 0.7
  assert np.mean(ps <= 0.05) <= 0.2
  assert stats.kstest(ps, 'uniform').pvalue > 0.001
  with pytest.raises(InputError, match='square'):
    rstats.permutation_test(a, a[:-1, :-1])
  const = rstats.permutation_test(np.ones((6, 6)), a[:6, :6], n_perm=5)
  assert np.isnan(const['value']) and np.isnan(const['p'])


def _tied(m, levels, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.integers(0, levels, m).astype(np.float64)
  b = np.round(a + 2 * rng.standard_normal(m))  # ~10 levels, correlated
  return a, b


@pytest.mark.parametrize('m', [2_000, 100_000])
def test_exact_spearman_heavy_ties_both_paths(m):
  """Host (scipy ranks, float64) and device (int32 2 * rank, exact integer
  sums: at 1e5 entries the 14-bit limbs are all in use) vs scipy."""
  a, b = _tied(m, levels=4)
  want = stats.spearmanr(a, b)[0]
  assert kernels.compare_rdms(a, b, 'spearman') == pytest.approx(
    want, abs=1e-12
  )
  va, vb = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  ca, cb = compare._centred_rank2(va), compare._centred_rank2(vb)
  np.testing.assert_array_equal(ca, 2 * stats.rankdata(a) - (m + 1))
  assert compare._rank_corr(ca, cb) == pytest.approx(want, abs=1e-12)
  many = compare.compare_many(a, {'b': b, 'a': a}, ('spearman',))
  assert many['b']['spearman'] == pytest.approx(want, abs=1e-12)
  assert many['a']['spearman'] == pytest.approx(1.0, abs=1e-15)
  assert np.isnan(kernels.compare_rdms(np.ones(m), b, 'spearman'))


@pytest.mark.slow
def test_exact_spearman_above_2_24_entries():
  """n = 5900 images: 17.4M entries > 2^24, where float32 ranks round (the
  float32 path was 8e-8 off here); both paths now within float64 rounding.
  ~40 s on 2 CPU cores, half of it XLA's CPU sort (the device path)."""
  m = 5900 * 5899 // 2
  a, b = _tied(m, levels=50, seed=1)
  want = stats.spearmanr(a, b)[0]
  assert abs(kernels.compare_rdms(a, b, 'spearman') - want) < 1e-9
  va, vb = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  dev = compare._rank_corr(
    compare._centred_rank2(va), compare._centred_rank2(vb)
  )
  assert abs(dev - want) < 1e-9


def test_image_sets_of_one_bucket_share_the_draws_program():
  """A run's 12 test images and the leaked run's 120: counts padded to 128
  columns (the images never paired weigh nothing), one compile, and the
  statistics of a reference computed without the padding."""
  rng = np.random.default_rng(4)
  sizes = []
  for n in (12, 120):
    i, j = np.triu_indices(n, 1)
    keep = rng.choice(len(i), 66, replace=False)
    i, j = i[keep], j[keep]
    t = rng.standard_normal(66)
    preds = {'a': t + rng.standard_normal(66), 'b': rng.standard_normal(66)}
    counts = rstats.bootstrap_counts(n, 5, seed=n)
    got = rstats.weighted_pair_stats(i, j, preds, t, counts)
    sizes.append(_weighted._draws._cache_size())
    for b in range(5):
      w = counts[b, i] * counts[b, j]  # the draw's pair multiset
      for k, v in preds.items():
        ref = stats.spearmanr(np.repeat(v, w), np.repeat(t, w)).statistic
        np.testing.assert_allclose(got[k]['spearman'][b], ref, atol=1e-6)
  assert _weighted.count_width(12) == _weighted.count_width(120) == 128
  assert sizes[1] == sizes[0], 'the second image count compiled again'
