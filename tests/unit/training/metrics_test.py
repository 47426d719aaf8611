"""Metrics vs scipy / sklearn in float64; the streaming accumulator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import mean_squared_error, r2_score

from rdmjax.training import losses, metrics


def _data(n=500, ties=False, seed=0):
  rng = np.random.default_rng(seed)
  t = rng.normal(size=n)
  p = 0.6 * t + rng.normal(size=n) * 0.8 + 0.3
  if ties:
    t, p = np.round(t, 1), np.round(p, 1)  # many tied values
  return p, t


def _mask(n, seed=1):
  return (np.random.default_rng(seed).uniform(size=n) > 0.3).astype(np.float32)


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('masked', [False, True])
def test_against_scipy_sklearn(ties, masked):
  p, t = _data(ties=ties)
  m = _mask(len(p)) if masked else None
  k = m > 0 if masked else np.ones(len(p), bool)
  f = jax.jit(
    lambda p, t, m: {
      'pearson': metrics.pearson(p, t, m),
      'spearman': metrics.spearman(p, t, m),
      'r2': metrics.r2(p, t, m),
      'mse': metrics.mse(p, t, m),
    }
  )
  got = f(jnp.asarray(p, jnp.float32), jnp.asarray(t, jnp.float32), m)
  np.testing.assert_allclose(
    got['pearson'], stats.pearsonr(p[k], t[k])[0], rtol=1e-5
  )
  np.testing.assert_allclose(
    got['spearman'], stats.spearmanr(p[k], t[k])[0], rtol=1e-5
  )
  np.testing.assert_allclose(got['r2'], r2_score(t[k], p[k]), rtol=1e-5)
  np.testing.assert_allclose(
    got['mse'], mean_squared_error(t[k], p[k]), rtol=1e-5
  )


def test_spearman_ties_differ_from_ordinal_ranks():
  # With ties, average ranks matter: check against scipy on heavy ties.
  p = np.array([1, 1, 1, 2, 2, 3, 3, 3, 3, 4], np.float32)
  t = np.array([2, 1, 2, 3, 3, 3, 5, 4, 4, 4], np.float32)
  np.testing.assert_allclose(
    metrics.spearman(jnp.asarray(p), jnp.asarray(t)),
    stats.spearmanr(p, t)[0],
    rtol=1e-6,
  )


def test_pearson_mse_is_the_study_loss():
  p, t = _data()
  m = _mask(len(p))
  k = m > 0
  want = 0.3 * (1 - stats.pearsonr(p[k], t[k])[0]) + 0.7 * np.mean(
    (p[k] - t[k]) ** 2
  )
  got = losses.pearson_mse(jnp.asarray(p), jnp.asarray(t), m, alpha=0.3)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  g = jax.grad(lambda x: losses.pearson_mse(x, jnp.asarray(t), m))(
    jnp.asarray(p, jnp.float32)
  )
  assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~k] == 0)


def test_r2_constant_target_as_sklearn():
  t = np.ones(5, np.float32)
  for p in (t, t + 1):
    np.testing.assert_allclose(
      metrics.r2(jnp.asarray(p), jnp.asarray(t)), r2_score(t, p)
    )


@pytest.mark.parametrize('ties', [False, True])
def test_accumulator_over_tiles(ties):
  p, t = _data(n=5000, ties=ties, seed=2)
  t = t + 1.0  # dissimilarities near 1: the centring matters
  m = _mask(len(p), seed=3)
  acc = metrics.PairMetricsAccumulator()
  for s in range(0, len(p), 777):
    acc.update(p[s : s + 777], t[s : s + 777], m[s : s + 777])
  out = acc.result()
  k = m > 0
  assert out['n_pairs'] == k.sum() == out['n_spearman']
  np.testing.assert_allclose(out['r2'], r2_score(t[k], p[k]), rtol=1e-10)
  np.testing.assert_allclose(
    out['pearson'], stats.pearsonr(p[k], t[k])[0], rtol=1e-10
  )
  np.testing.assert_allclose(
    out['spearman'], stats.spearmanr(p[k], t[k])[0], rtol=1e-10
  )
