"""Encoding baselines: ridge from embeddings to vertices (and its veRSA).

- `fit_ridge`: embeddings -> vertex responses, one ridge per vertex with an
  unpenalised intercept, the penalty chosen on training images only by
  exact leave-one-out error (scikit-learn RidgeCV's default, same choice) or
  GCV, one alpha for all vertices or one per vertex. One SVD of the centred
  embeddings serves every alpha and every vertex.
- `score_encoding` / `ridge_rsa`: the veRSA baseline of Net2Brain (RDM of
  the predicted test responses vs the measured test RDM, Spearman) and the
  Algonauts devkit's score (Pearson r per vertex; with a noise ceiling,
  100 r^2 / NC, negative r set to 0, capped at 100).
- feature-reweighted RSA: `rdmjax.rsa.reweighted`.

Ridge runs in numpy on the host, in float64 by default: OpenBLAS reaches
~88 GFLOP/s (f64) on the 2-core CPU where XLA's CPU dot gets ~40% of it
(see `rdmjax.rsa.rdm.rdm`), and float64 reproduces scikit-learn's choice of
alpha exactly; dtype='float32' halves the time. Exact leave-one-out costs
one [n, r] x [r, chunk] product per alpha and chunk of vertices (r = rank
of the centred embeddings), GCV one per chunk in all. Memory: Y itself, two
[n, chunk] buffers, [r, v] projections and the [d, v] f32 weights. At NSD
size (n = 9841, d = 512, v = 39548, one alpha of 9) on the busy 2-core CPU:
LOO float64 79-137 s, float32 48 s, GCV 16 s; peak RSS 2.6 GiB with Y.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import threadpoolctl
from scipy import linalg

from rdmjax.errors import InputError
from rdmjax.rsa import rdm as rdm_lib

__all__ = [
  'RELATIVE_ALPHAS',
  'RidgeFit',
  'fit_ridge',
  'noise_normalised',
  'predicted_pair_dissimilarities',
  'ridge_rsa',
  'score_encoding',
  'vertex_correlation',
]

# Default grid, in units of trace(Xc^T Xc) / d (n times the mean feature
# variance): scale-free, so it suits unit-norm and raw embeddings alike.
RELATIVE_ALPHAS = np.logspace(-4, 4, 9)
CV_MODES = ('loo', 'gcv')


@dataclasses.dataclass(frozen=True)
class RidgeFit:
  """A fitted multi-target ridge: pred = (x - x_mean) @ weights + y_mean.

  Attributes:
    weights: [d, v] f32 coefficients.
    intercept: [v] f32, y_mean - x_mean @ weights.
    alpha: [v] f64 the chosen penalty of each vertex (all equal unless
      per_vertex).
    alphas: [n_alphas] f64 the grid searched (absolute).
    cv_mse: [n_alphas, v] f64 leave-one-out (or GCV) mean squared error of
      each alpha and vertex on the training images.
    x_mean: [d] f64 training embedding mean.
    y_mean: [v] f64 training response mean.
  """

  weights: np.ndarray
  intercept: np.ndarray
  alpha: np.ndarray
  alphas: np.ndarray
  cv_mse: np.ndarray
  x_mean: np.ndarray
  y_mean: np.ndarray

  def predict(self, x) -> np.ndarray:
    """x: [n, d] embeddings -> [n, v] f32 predicted responses."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[1] != self.weights.shape[0]:
      raise InputError(
        f'embeddings shape {x.shape}: pass [n, {self.weights.shape[0]}]'
      )
    pred = (x - self.x_mean.astype(np.float32)) @ self.weights
    pred += self.y_mean.astype(np.float32)
    return pred


def _check_xy(x, y) -> None:
  if getattr(x, 'ndim', 0) != 2 or getattr(y, 'ndim', 0) != 2:
    raise InputError(
      f'shapes {getattr(x, "shape", None)}, {getattr(y, "shape", None)}: pass'
      ' embeddings [n, d] and responses [n, v]'
    )
  if x.shape[0] != y.shape[0] or x.shape[0] < 3:
    raise InputError(
      f'{x.shape[0]} embedding rows, {y.shape[0]} response rows: pass the'
      ' same n >= 3 images in both'
    )


def fit_ridge(
  x_train,
  y_train,
  alphas=None,
  *,
  per_vertex: bool = False,
  cv: str = 'loo',
  chunk: int = 4096,
  dtype: str = 'float64',
) -> RidgeFit:
  """Ridge from embeddings to every vertex, penalty chosen on training data.

  Leave-one-out residuals of all vertices at once: with Xc = U S V^T (X
  centred) and f = s^2 / (s^2 + alpha), the hat matrix is 1 1^T / n +
  U diag(f) U^T, so the LOO residual of image i is e_i / (1 - h_i) with
  e = Yc - U diag(f) U^T Yc (scikit-learn's RidgeCV, cv=None: same errors,
  same choice, first alpha on ties). 'gcv' replaces h_i by trace(H) / n:
  no [n, chunk] product per alpha.

  Args:
    x_train: [n, d] embeddings of the training images.
    y_train: [n, v] responses (any float dtype, e.g. a float32 memmap; read
      chunk columns at a time).
    alphas: absolute penalties; default RELATIVE_ALPHAS * trace(Xc^T Xc) / d.
    per_vertex: one alpha per vertex (its own CV minimum) instead of the one
      minimising the CV error summed over vertices.
    cv: 'loo' (exact leave-one-out) or 'gcv' (generalised CV).
    chunk: vertices per block.
    dtype: 'float64' or 'float32': about twice as fast, CV errors to ~3e-6
      relative, so near-ties may go the other way (0.2% of per-vertex
      choices at n = 9841).

  Returns:
    The RidgeFit.
  """
  _check_xy(x_train, y_train)
  if cv not in CV_MODES:
    raise InputError(f'cv {cv!r} unknown: use one of {CV_MODES}')
  if dtype not in ('float64', 'float32'):
    raise InputError(f'dtype {dtype!r}: use float64 or float32')
  if chunk < 1:
    raise InputError(f'chunk {chunk}: pass a positive number of vertices')
  x = np.asarray(x_train, np.float64)
  x_mean, u, s, vt = _centred_svd(x)
  if alphas is None:
    alphas = RELATIVE_ALPHAS * np.sum(s**2) / x.shape[1]
  alphas = np.atleast_1d(np.asarray(alphas, np.float64))
  if alphas.ndim != 1 or not np.all(alphas > 0):
    raise InputError(f'alphas {alphas}: pass positive penalties')
  proj, cv_mse, y_mean = _cv_errors(u, s, alphas, y_train, cv, chunk, dtype)
  if per_vertex:
    best = np.argmin(cv_mse, axis=0)
  else:
    best = np.full(cv_mse.shape[1], np.argmin(cv_mse.mean(1)))
  alpha = alphas[best]
  weights, intercept = _solve(s, vt, proj, alpha, x_mean, y_mean, chunk)
  return RidgeFit(weights, intercept, alpha, alphas, cv_mse, x_mean, y_mean)


def _centred_svd(x: np.ndarray):
  """(x_mean [d], U [n, r], s [r], V^T [r, d]) of x centred, the singular
  values above rounding only."""
  n, d = x.shape
  if not np.isfinite(x).all():
    raise InputError('embeddings have non-finite values: drop those images')
  x_mean = x.mean(0)
  u, s, vt = _svd(x - x_mean)
  if not s.size or s[0] == 0:
    raise InputError('embeddings are constant over images: nothing to fit')
  keep = s > s[0] * max(n, d) * np.finfo(np.float64).eps
  return x_mean, u[:, keep], s[keep], vt[keep]


def _cv_errors(u, s, alphas, y_train, cv: str, chunk: int, dtype: str):
  """(U^T Yc [r, v], CV mean squared errors [n_alphas, v], y_mean [v]),
  reading y_train `chunk` vertices at a time."""
  ft = np.dtype(dtype)
  n, v = u.shape[0], y_train.shape[1]
  f = s**2 / (s**2 + alphas[:, None])  # [n_alphas, r] shrinkage factors
  lev = 1 / n + (u**2) @ f.T  # [n, n_alphas] diagonal of the hat matrix
  uf = u.astype(ft)
  proj = np.empty((s.size, v))  # U^T Yc
  cv_mse = np.empty((alphas.size, v))
  y_mean = np.empty(v)
  for lo in range(0, v, chunk):
    cols = slice(lo, min(lo + chunk, v))
    yc = np.array(y_train[:, cols], ft)
    if not np.isfinite(yc).all():
      bad = lo + np.flatnonzero(~np.isfinite(yc).all(0))[0]
      raise InputError(f'responses of vertex {bad} are not all finite')
    y_mean[cols] = yc.mean(0, dtype=np.float64)
    yc -= y_mean[cols].astype(ft)
    a = uf.T @ yc
    proj[:, cols] = a
    if cv == 'loo':
      cv_mse[:, cols] = _loo_mse(uf, a, yc, f, 1 / (1 - lev))
    else:
      ss = np.einsum('ij,ij->j', yc, yc, dtype=np.float64)
      rss = ss - (2 * f - f**2) @ np.square(a, dtype=np.float64)
      df = 1 + f.sum(1, keepdims=True)
      cv_mse[:, cols] = np.maximum(rss, 0) / n / (1 - df / n) ** 2
  return proj, cv_mse, y_mean


def _solve(s, vt, proj, alpha, x_mean, y_mean, chunk: int):
  """Weights [d, v] f32 and intercepts [v] f32 at each vertex's alpha."""
  d, v = vt.shape[1], proj.shape[1]
  weights = np.empty((d, v), np.float32)
  intercept = np.empty(v, np.float32)
  for lo in range(0, v, chunk):
    cols = slice(lo, min(lo + chunk, v))
    g = s[:, None] / (s[:, None] ** 2 + alpha[None, cols])
    w = vt.T @ (g * proj[:, cols])
    weights[:, cols] = w
    intercept[cols] = y_mean[cols] - x_mean @ w
  return weights, intercept


def _svd(xc):
  """Thin SVD; gesdd (fast) unless it fails to converge.

  One BLAS thread: a [9841, 512] SVD then takes ~1.5 s; threaded LAPACK on
  a busy 2-core host took 2-5 s (540 x 512: 0.1 s against 2-3 s).
  """
  with threadpoolctl.threadpool_limits(1, user_api='blas'):
    try:
      return linalg.svd(xc, full_matrices=False, check_finite=False)
    except linalg.LinAlgError:
      return linalg.svd(xc, full_matrices=False, lapack_driver='gesvd')


def _loo_mse(u, a, yc, f, scale) -> np.ndarray:
  """[n_alphas, chunk] mean of (e_i / (1 - h_i))^2 over images."""
  buf = np.empty_like(yc)
  out = np.empty((f.shape[0], yc.shape[1]))
  for k in range(f.shape[0]):
    np.matmul(u, f[k].astype(u.dtype)[:, None] * a, out=buf)
    buf -= yc
    np.square(buf, out=buf)
    # A matrix-vector product: the (1 - h)^-2 weighted sum over images.
    out[k] = (scale[:, k] ** 2).astype(u.dtype) @ buf
  return out / yc.shape[0]


def vertex_correlation(pred, y, chunk: int = 4096) -> np.ndarray:
  """Pearson r of each column of pred with the same column of y.

  Args:
    pred: [n, v] predicted responses.
    y: [n, v] measured responses.
    chunk: columns per block (float64 in blocks).

  Returns:
    [v] f64; NaN where either column is constant.
  """
  if np.shape(pred) != np.shape(y) or np.ndim(y) != 2:
    raise InputError(
      f'shapes {np.shape(pred)}, {np.shape(y)}: pass two [n, v] arrays'
    )
  v = y.shape[1]
  out = np.empty(v)
  for lo in range(0, v, chunk):
    cols = slice(lo, min(lo + chunk, v))
    a = np.array(pred[:, cols], np.float64)
    b = np.array(y[:, cols], np.float64)
    a -= a.mean(0)
    b -= b.mean(0)
    den = np.sqrt(np.einsum('ij,ij->j', a, a) * np.einsum('ij,ij->j', b, b))
    with np.errstate(invalid='ignore', divide='ignore'):
      out[cols] = np.where(den > 0, np.einsum('ij,ij->j', a, b) / den, np.nan)
  return out


def noise_normalised(r, noise_ceiling) -> np.ndarray:
  """The Algonauts devkit's score per vertex: 100 r^2 / NC, at most 100.

  Negative r count as 0 and zero ceilings as 1e-14 (devkit rules).

  Args:
    r: [v] Pearson r per vertex.
    noise_ceiling: [v] NC as a fraction in [0, 1], as the Algonauts
      `*_noise_ceiling.npy` files hold it.

  Returns:
    [v] f64 percent; NaN where r is NaN.
  """
  r = np.asarray(r, np.float64)
  nc = np.asarray(noise_ceiling, np.float64)
  if nc.shape != r.shape:
    raise InputError(f'noise ceiling shape {nc.shape}: pass one per vertex')
  if np.nanmax(nc) > 1 or np.nanmin(nc) < 0:
    raise InputError(
      f'noise ceiling in [{np.nanmin(nc)}, {np.nanmax(nc)}]: pass a fraction'
      ' in [0, 1] (divide percentages by 100)'
    )
  nc = np.where(nc == 0, 1e-14, nc)
  with np.errstate(invalid='ignore'):
    score = 100 * np.maximum(r, 0) ** 2 / nc
  return np.minimum(score, 100)


def score_encoding(
  fit: RidgeFit,
  x_test,
  y_test,
  metric: str = 'correlation',
  noise_ceiling=None,
) -> dict:
  """Scores a ridge fit on test images: veRSA and per-vertex accuracy.

  Args:
    fit: from `fit_ridge` (trained on other images).
    x_test: [m, d] test embeddings.
    y_test: [m, v] measured test responses.
    metric: the RDM metric of `rdmjax.rsa.rdm.rdm` for both RDMs.
    noise_ceiling: optional [v] NC fraction (see `noise_normalised`).

  Returns:
    dict: spearman (predicted vs measured test RDM, upper triangles),
    pred_rdm [m, m] f32, pred [m, v] f32, r [v] (Pearson per vertex),
    r_median, r_mean (NaN-ignoring); with a ceiling also nc_score [v],
    nc_score_median, nc_score_mean (percent).
  """
  pred = fit.predict(x_test)
  y = np.asarray(y_test, np.float32)
  if y.shape != pred.shape:
    raise InputError(f'test responses {y.shape}: pass [{len(pred)}, v]')
  pred_rdm = np.asarray(rdm_lib.rdm(pred, metric))
  rho = rdm_lib.compare_rdms(pred_rdm, rdm_lib.rdm(y, metric), 'spearman')
  r = vertex_correlation(pred, y)
  out = dict(
    spearman=rho,
    pred_rdm=pred_rdm,
    pred=pred,
    r=r,
    r_median=float(np.nanmedian(r)),
    r_mean=float(np.nanmean(r)),
  )
  if noise_ceiling is not None:
    nc = noise_normalised(r, noise_ceiling)
    out['nc_score'] = nc
    out['nc_score_median'] = float(np.nanmedian(nc))
    out['nc_score_mean'] = float(np.nanmean(nc))
  return out


def ridge_rsa(
  x_train,
  y_train,
  x_test,
  y_test,
  metric: str = 'correlation',
  *,
  noise_ceiling=None,
  **ridge_kwargs,
) -> dict:
  """`fit_ridge` on the training images, then `score_encoding` on the test.

  Returns:
    `score_encoding`'s dict plus 'fit' (the RidgeFit).
  """
  fit = fit_ridge(x_train, y_train, **ridge_kwargs)
  out = score_encoding(fit, x_test, y_test, metric, noise_ceiling)
  out['fit'] = fit
  return out


def predicted_pair_dissimilarities(
  fit: RidgeFit, x, i, j, metric: str = 'correlation', chunk: int = 8192
) -> np.ndarray:
  """Dissimilarity of the predicted responses of images i[k] and j[k].

  Scores a ridge on the same test pairs as a pair model. x: [m, d]; i, j:
  [P] indices into x. Returns [P] f32.
  """
  pred = fit.predict(x)
  i, j = np.asarray(i), np.asarray(j)
  out = [
    np.asarray(
      rdm_lib.paired(pred[i[lo : lo + chunk]], pred[j[lo : lo + chunk]], metric)
    )
    for lo in range(0, i.size, chunk)
  ]
  return np.concatenate(out) if out else np.zeros(0, np.float32)
