"""rdmjax.rsa._weighted: float32 draws against float64 references.

The reference of a draw is its expanded multiset: pair k repeated w_k =
c_i c_j times (np.repeat, pairs of weight 0 left out), average ranks for
ties, scored in float64 by scipy (Spearman, Pearson, rankdata for rho-a),
numpy (R^2, cosine) and, for one draw, rsatoolbox's compare. Every case
has the original images (row 0, all-ones counts) and bootstrap draws, and
each statistic must be within 1e-6 (R^2: 1e-6 * max(1, |R^2|)) in every
row. The tie-heavy cases are categorical model RDMs (0 within a category,
1 between: two tie groups of ~2000 pairs at 92 images), whose centred rank
sums cancel.
"""

import importlib

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

from rdmjax.errors import InputError
from rdmjax.rsa import _weighted
from rdmjax.rsa import inference as rstats

TOL = 1e-6
ALL = _weighted.ALL_PAIR_STATS


def _reference(pred, target, w):
  """The five statistics of the expanded multiset, float64."""
  keep = w > 0
  pe = np.repeat(pred[keep], w[keep])
  te = np.repeat(target[keep], w[keep])
  m = pe.size
  ra, rb = stats.rankdata(pe), stats.rankdata(te)
  na, nb = np.sum(pe * pe), np.sum(te * te)
  return {
    'spearman': stats.spearmanr(pe, te).statistic,
    'pearson': stats.pearsonr(pe, te).statistic,
    'r2': 1 - np.sum((te - pe) ** 2) / np.sum((te - te.mean()) ** 2),
    'rho_a': 12 * np.sum((ra - ra.mean()) * (rb - rb.mean())) / (m**3 - m),
    'cosine': np.sum(pe * te) / np.sqrt(na * nb) if na * nb > 0 else 0.0,
  }


def _categorical(labels, i, j):
  return (labels[i] != labels[j]).astype(np.float64)


def _counts(m, n_boot, seed):
  """Row 0 the original images, then bootstrap draws."""
  return np.concatenate(
    [np.ones((1, m), np.int32), rstats.bootstrap_counts(m, n_boot, seed)]
  )


def _assert_accurate(i, j, preds, target, counts):
  """Every statistic of every row within TOL; returns the largest error."""
  got = rstats.weighted_pair_stats(i, j, preds, target, counts, stats=ALL)
  worst = 0.0
  for b in range(len(counts)):
    w = counts[b, i] * counts[b, j]
    for name, p in preds.items():
      for s, want in _reference(p, target, w).items():
        err = abs(got[name][s][b] - want)
        if s == 'r2':
          err /= max(1.0, abs(want))
        row = 'original images' if b == 0 else f'draw {b}'
        assert err <= TOL, (row, name, s, got[name][s][b], want)
        worst = max(worst, err)
  return worst


def _case(kind, m, seed):
  """Pairs, predictions and target of one kind of RDM."""
  rng = np.random.default_rng(seed)
  i, j = np.triu_indices(m, 1)
  if kind.startswith('categories'):  # the bug report: a categorical model
    k = int(kind.split('_')[1])
    labels = np.arange(m) % k  # balanced: ~P / k pairs within
    rng.shuffle(labels)
    model = _categorical(labels, i, j)
    target = rng.standard_normal(i.size) + 0.3 * model
    preds = {'model': model, 'noisy': target + rng.standard_normal(i.size)}
  elif kind == 'tied_target':  # a few large tie groups in the target too
    labels = rng.integers(0, 3, m)
    model = _categorical(labels, i, j)
    target = np.clip(np.round(rng.standard_normal(i.size)), -1, 1) + model
    preds = {
      'model': model,
      'tied': np.round(target + rng.standard_normal(i.size)),
    }
  elif kind == 'categorical_target':  # the model RDM as the target
    model = _categorical(rng.integers(0, 2, m), i, j)
    target = model
    preds = {'continuous': model + rng.standard_normal(i.size)}
  else:  # continuous: correlation distances of random patterns
    x = rng.standard_normal((m, 20))
    target = pdist(x, 'correlation')
    y = x + rng.standard_normal(x.shape)
    preds = {'near': pdist(y, 'correlation'), 'far': pdist(y, 'euclidean')}
  return i, j, preds, target


@pytest.mark.parametrize(
  'kind, m, n_boot',
  [
    ('categories_2', 92, 24),  # the reported case: 2070 and 2116 pairs
    ('categories_3', 92, 12),
    ('categories_8', 92, 12),
    ('categories_2', 20, 24),
    ('categories_2', 300, 4),
    ('tied_target', 150, 8),
    ('categorical_target', 92, 8),
    ('continuous', 60, 8),
  ],
)
def test_draws_within_1e6_of_float64(kind, m, n_boot):
  i, j, preds, target = _case(kind, m, seed=m + n_boot)
  _assert_accurate(i, j, preds, target, _counts(m, n_boot, seed=m))


def test_draws_within_1e6_at_1000_images():
  """All 499500 pairs of 1000 images, categorical and tied predictions."""
  m = 1000
  rng = np.random.default_rng(7)
  i, j = np.triu_indices(m, 1)
  model = _categorical(rng.integers(0, 2, m), i, j)
  target = rng.standard_normal(i.size) + 0.1 * model
  preds = {
    'model': model,
    'tied': np.round(target + rng.standard_normal(i.size)),
  }
  _assert_accurate(i, j, preds, target, _counts(m, 2, seed=1))


def test_rho_a_and_cosine_equal_rsatoolbox_on_expanded_vectors():
  rdm = importlib.import_module('rsatoolbox.rdm')
  i, j, preds, target = _case('categories_3', 40, seed=3)
  preds = {'model': preds['model'] + 0.5, 'noisy': preds['noisy']}
  counts = _counts(40, 2, seed=5)
  got = rstats.weighted_pair_stats(i, j, preds, target, counts, stats=ALL)
  for b in range(len(counts)):
    w = counts[b, i] * counts[b, j]
    te = np.repeat(target, w)[None]
    for name, p in preds.items():
      pe = np.repeat(p, w)[None]
      for ours, theirs in (('rho_a', 'rho-a'), ('cosine', 'cosine')):
        want = rdm.compare(pe, te, method=theirs)[0, 0]
        assert got[name][ours][b] == pytest.approx(want, abs=TOL), (b, ours)


def test_default_stats_unchanged_and_others_on_request():
  i, j, preds, target = _case('categories_2', 30, seed=2)
  counts = _counts(30, 5, seed=2)
  default = rstats.weighted_pair_stats(i, j, preds, target, counts)
  every = rstats.weighted_pair_stats(i, j, preds, target, counts, stats=ALL)
  prepared = _weighted.prepare_pairs(i, j, preds, target, 30)
  some = _weighted.run_draws(prepared, counts, stats=('cosine', 'spearman'))
  assert _weighted.PAIR_STATS == ('spearman', 'pearson', 'r2')
  assert ALL == ('spearman', 'pearson', 'r2', 'rho_a', 'cosine')
  for name in preds:
    assert list(default[name]) == list(_weighted.PAIR_STATS)
    assert list(every[name]) == list(ALL)
    assert list(some[name]) == ['cosine', 'spearman']
    for s, v in every[name].items():
      assert v.shape == (6,) and v.dtype == np.float64
      if s in default[name]:
        np.testing.assert_allclose(v, default[name][s], rtol=0, atol=1e-7)
      if s in some[name]:
        np.testing.assert_allclose(v, some[name][s], rtol=0, atol=1e-7)
  for bad in (('kendall',), (), ('spearman', 'spearman')):
    with pytest.raises(InputError, match='stats'):
      _weighted.run_draws(prepared, counts, stats=bad)


def test_degenerate_draws():
  """No pair drawn: NaN in every statistic. One pair drawn: rho-a NaN
  (W^3 - W = 0). An all-zero prediction: cosine 0, as rsatoolbox."""
  m = 6
  i, j = np.triu_indices(m, 1)
  target = np.arange(i.size, dtype=np.float64) + 1
  preds = {'zero': np.zeros(i.size), 'p': target[::-1].copy()}
  counts = np.array([[1] * m, [0, 0, 3, 0, 0, 0], [1, 1, 0, 0, 0, 0]], np.int32)
  got = rstats.weighted_pair_stats(i, j, preds, target, counts, stats=ALL)
  for name in preds:
    for s in ALL:
      assert np.isnan(got[name][s][1]), (name, s)  # W = 0
    assert np.isnan(got[name]['rho_a'][2])  # W = 1
  assert got['zero']['cosine'][0] == 0.0
  want = _reference(preds['p'], target, np.ones(i.size, int))
  for s in ALL:
    assert got['p'][s][0] == pytest.approx(want[s], abs=TOL), s
