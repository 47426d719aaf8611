"""Ridge and reweighted-RSA baselines against scikit-learn, scipy, numpy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats
from scipy.spatial.distance import pdist, squareform
from sklearn.linear_model import Ridge, RidgeCV

from rdmjax.errors import InputError
from rdmjax.rsa import encoding, reweighted

ALPHAS = np.logspace(-2, 4, 7)


def _data(n, d, v, seed=0, noise=1.0):
  """Y = X W + noise with SNR varying over vertices (so do their alphas)."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, d)) * rng.uniform(0.2, 3, d) + 1.5
  w = rng.standard_normal((d, v)) * np.geomspace(0.01, 2, v)
  y = x @ w + noise * rng.standard_normal((n, v)) + rng.standard_normal(v)
  return x, y


@pytest.mark.parametrize('n,d', [(60, 12), (20, 30)])
def test_weights_and_predictions_equal_sklearn_ridge(n, d):
  x, y = _data(n, d, 7)
  fit = encoding.fit_ridge(x, y, [3.0])
  ref = Ridge(alpha=3.0).fit(x, y)
  np.testing.assert_allclose(fit.weights, ref.coef_.T, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(fit.intercept, ref.intercept_, rtol=1e-4)
  x_new = _data(9, d, 1, seed=1)[0]
  np.testing.assert_allclose(
    fit.predict(x_new), ref.predict(x_new), rtol=1e-4, atol=1e-4
  )


@pytest.mark.parametrize('n,d', [(80, 10), (25, 40)])
@pytest.mark.parametrize('per_vertex', [False, True])
def test_alpha_and_loo_errors_equal_sklearn_ridgecv(n, d, per_vertex):
  x, y = _data(n, d, 30, noise=3.0)
  fit = encoding.fit_ridge(x, y, ALPHAS, per_vertex=per_vertex)
  ref = RidgeCV(
    alphas=ALPHAS, alpha_per_target=per_vertex, store_cv_results=True
  ).fit(x, y)
  want = np.broadcast_to(ref.alpha_, (30,))
  np.testing.assert_array_equal(fit.alpha, want)
  if per_vertex:
    assert np.unique(fit.alpha).size > 2  # the test data spreads them
  # Mean squared LOO error per vertex and alpha: [n, v, alphas] -> [alphas, v]
  np.testing.assert_allclose(fit.cv_mse, ref.cv_results_.mean(0).T, rtol=1e-7)
  np.testing.assert_allclose(fit.weights, ref.coef_.T, rtol=1e-4, atol=1e-6)


def test_chunked_equals_unchunked_and_float32_close():
  x, y = _data(70, 15, 23, noise=2.0)
  y = y.astype(np.float32)
  one = encoding.fit_ridge(x, y, ALPHAS, per_vertex=True, chunk=1000)
  for kw in (dict(chunk=4), dict(chunk=5, dtype='float32')):
    got = encoding.fit_ridge(x, y, ALPHAS, per_vertex=True, **kw)
    np.testing.assert_array_equal(got.alpha, one.alpha)
    np.testing.assert_allclose(got.cv_mse, one.cv_mse, rtol=1e-4)
    np.testing.assert_allclose(got.weights, one.weights, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got.intercept, one.intercept, rtol=1e-4)


def test_gcv_equals_brute_force_hat_matrix():
  x, y = _data(40, 8, 5, noise=2.0)
  fit = encoding.fit_ridge(x, y, ALPHAS, cv='gcv', per_vertex=True)
  xc, yc = x - x.mean(0), y - y.mean(0)
  n = len(x)
  for k, a in enumerate(ALPHAS):
    h = np.ones((n, n)) / n + xc @ np.linalg.solve(
      xc.T @ xc + a * np.eye(8), xc.T
    )
    e = yc - h @ yc
    want = (e**2).mean(0) / (1 - np.trace(h) / n) ** 2
    np.testing.assert_allclose(fit.cv_mse[k], want, rtol=1e-8)
  np.testing.assert_array_equal(
    fit.alpha, ALPHAS[np.argmin(fit.cv_mse, axis=0)]
  )


def test_default_alphas_scale_with_embeddings():
  x, y = _data(50, 6, 4)
  a = encoding.fit_ridge(x, y)
  b = encoding.fit_ridge(10 * x, y)
  np.testing.assert_allclose(b.alphas, 100 * a.alphas)
  np.testing.assert_allclose(b.predict(10 * x), a.predict(x), rtol=1e-4)


def _split(seed, n_train=300, n_test=60, d=20, v=200, noise=1.0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n_train + n_test, d))
  y = x @ rng.standard_normal((d, v)) + noise * rng.standard_normal(
    (n_train + n_test, v)
  )
  return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def test_ridge_rsa_recovers_linear_responses_and_not_random_ones():
  x, y, xt, yt = _split(0)
  nc = np.random.default_rng(1).uniform(0, 0.9, 200)
  nc[:3] = 0
  out = encoding.ridge_rsa(x, y, xt, yt, noise_ceiling=nc)
  assert out['spearman'] > 0.8
  want = [np.corrcoef(out['pred'][:, k], yt[:, k])[0, 1] for k in range(200)]
  np.testing.assert_allclose(out['r'], want, rtol=1e-5)
  assert out['r_median'] == pytest.approx(np.median(want), rel=1e-5)
  score = np.minimum(
    100 * np.maximum(want, 0) ** 2 / (nc + 1e-14 * (nc == 0)), 100
  )
  np.testing.assert_allclose(out['nc_score'], score, rtol=1e-5)
  assert out['nc_score_mean'] == pytest.approx(score.mean(), rel=1e-5)
  # The predicted RDM is the RDM of the predictions; pairs score the same.
  want_rdm = squareform(pdist(out['pred'].astype(np.float64), 'correlation'))
  np.testing.assert_allclose(out['pred_rdm'], want_rdm, atol=1e-5)
  i, j = np.triu_indices(60, 1)
  pairs = encoding.predicted_pair_dissimilarities(out['fit'], xt, i, j)
  np.testing.assert_allclose(pairs, want_rdm[i, j], atol=1e-5)
  # Embeddings unrelated to the responses: no RDM agreement.
  rng = np.random.default_rng(2)
  null = encoding.ridge_rsa(
    rng.standard_normal(x.shape), y, rng.standard_normal(xt.shape), yt
  )
  assert abs(null['spearman']) < 0.15
  assert abs(null['r_mean']) < 0.1


def test_vertex_correlation_equals_corrcoef_and_nan_for_constant():
  rng = np.random.default_rng(3)
  a, b = rng.standard_normal((2, 30, 11))
  b[:, 4] = 2.0
  got = encoding.vertex_correlation(a, b, chunk=3)
  keep = [k for k in range(11) if k != 4]
  want = [np.corrcoef(a[:, k], b[:, k])[0, 1] for k in keep]
  assert np.isnan(got[4])
  np.testing.assert_allclose(got[keep], want, rtol=1e-12)


def test_noise_normalised_follows_devkit_rules():
  r = np.array([-0.3, 0.2, 0.5, 0.1, np.nan])
  nc = np.array([0.5, 0.08, 0.1, 0.0, 0.3])
  got = encoding.noise_normalised(r, nc)
  np.testing.assert_allclose(got[:4], [0, 50, 100, 100])
  assert np.isnan(got[4])
  with pytest.raises(InputError, match='fraction'):
    encoding.noise_normalised(r, nc * 100)


def _pairs(n, seed):
  i, j = np.triu_indices(n, 1)
  pick = np.random.default_rng(seed).choice(i.size, 600, replace=False)
  return i[pick], j[pick]


def test_reweighting_equals_scipy_nnls_on_centred_design():
  rng = np.random.default_rng(4)
  emb = rng.standard_normal((50, 9)) * rng.uniform(0.5, 2, 9)
  i, j = _pairs(50, 0)
  target = rng.uniform(0, 2, i.size) + 0.1 * np.abs(emb[i, 0] - emb[j, 0])
  fit = reweighted.fit_reweighted(emb, i, j, target, chunk=128)
  z = (emb - emb.mean(0)) / emb.std(0)
  design = (z[i] - z[j]) ** 2
  w, _ = optimize.nnls(design - design.mean(0), target - target.mean())
  assert (w == 0).sum() >= 2  # constraints are active
  np.testing.assert_allclose(fit.weights, w, rtol=1e-6, atol=1e-9)
  want = target.mean() - design.mean(0) @ w
  assert fit.intercept == pytest.approx(want, rel=1e-8)


def test_reweighting_recovers_generator_and_rdm_is_brute_force():
  rng = np.random.default_rng(5)
  emb = rng.standard_normal((120, 8)) * 3 + 1
  w_true = np.array([0, 2, 0.5, 0, 1, 0, 0, 3.0])
  i, j = _pairs(100, 1)
  z = (emb - emb[:100].mean(0)) / emb[:100].std(0)
  target = 0.7 + ((z[i] - z[j]) ** 2) @ w_true
  target += 0.01 * rng.standard_normal(i.size)
  fit = reweighted.fit_reweighted(emb[:100], i, j, target)
  np.testing.assert_allclose(fit.weights, w_true, atol=0.01)
  assert fit.intercept == pytest.approx(0.7, abs=0.01)
  test = emb[100:]
  zt = (test - fit.mean) / fit.scale
  diff = zt[:, None, :] - zt[None, :, :]
  want = fit.intercept + (diff**2) @ fit.weights
  np.fill_diagonal(want, 0)
  got = reweighted.reweighted_rdm(test, fit)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  a, b = np.triu_indices(20, 1)
  got = reweighted.reweighted_pairs(test, fit, a, b)
  np.testing.assert_allclose(got, want[a, b], rtol=1e-10)


def test_reweighted_rsa_beats_unweighted_rdm():
  rng = np.random.default_rng(6)
  emb = rng.standard_normal((260, 12))
  # Responses see 3 of the 12 dimensions, unequally.
  y = emb[:, :3] * [3.0, 1.5, 1.0] @ rng.standard_normal((3, 50))
  y += 0.3 * rng.standard_normal(y.shape)
  out = reweighted.reweighted_rsa(
    emb[:200],
    y[:200],
    emb[200:],
    y[200:],
    'euclidean',
    n_images=150,
    n_pairs=5000,
  )
  plain = stats.spearmanr(pdist(emb[200:]), pdist(y[200:]))[0]
  assert out['spearman'] > 0.85 and out['spearman'] > plain + 0.2
  assert out['rdm'].shape == (60, 60)
  assert np.all(out['fit'].weights[3:] < 0.1 * out['fit'].weights[:3].min())


def test_bad_input_is_named():
  with pytest.raises(InputError, match='same n'):
    encoding.fit_ridge(np.ones((5, 2)), np.ones((4, 3)))
  with pytest.raises(InputError, match='cv'):
    encoding.fit_ridge(*_data(10, 2, 2), cv='kfold')
  x, y = _data(10, 2, 3)
  y[4, 2] = np.nan
  with pytest.raises(InputError, match='vertex 2'):
    encoding.fit_ridge(x, y, chunk=2)
  with pytest.raises(InputError, match='positive'):
    encoding.fit_ridge(*_data(10, 2, 2), alphas=[0.0, 1.0])
