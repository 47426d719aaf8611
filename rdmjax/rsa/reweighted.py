"""Feature-reweighted RSA: one non-negative weight per standardised
embedding dimension, so that intercept + sum_k w_k (z_ak - z_bk)^2 fits
training-pair dissimilarities (NNLS with a free intercept); test RDMs are
then one Gram product. The ridge baselines: `rdmjax.rsa.encoding`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize

from rdmjax.errors import InputError
from rdmjax.rsa import rdm as rdm_lib

__all__ = [
  'Reweighting',
  'fit_reweighted',
  'reweighted_pairs',
  'reweighted_rdm',
  'reweighted_rsa',
]


@dataclasses.dataclass(frozen=True)
class Reweighting:
  """intercept + sum_k weights_k (z_ak - z_bk)^2, z = (emb - mean) / scale.

  Attributes:
    weights: [d] f64, non-negative.
    intercept: the fitted offset (off the diagonal of an RDM).
    mean: [d] f64 training embedding mean.
    scale: [d] f64 training embedding sd (1 for constant features).
  """

  weights: np.ndarray
  intercept: float
  mean: np.ndarray
  scale: np.ndarray


def _standardise(emb, mean, scale) -> np.ndarray:
  return (np.asarray(emb, np.float64) - mean) / scale


def fit_reweighted(emb, i, j, target, chunk: int = 16384) -> Reweighting:
  """Non-negative feature weights fitted to pair dissimilarities.

  Least squares of target on the per-dimension squared differences of
  standardised features, w >= 0, free intercept. Centring the design and
  the target over pairs removes the intercept exactly; the normal equations
  are accumulated over pair blocks (no [P, d] design) and solved by
  scipy.optimize.nnls on their eigen square root.

  Args:
    emb: [n, d] embeddings of the training images (standardisation stats).
    i: [P] first image of each training pair (index into emb).
    j: [P] second image.
    target: [P] dissimilarity of each pair.
    chunk: pairs per block.

  Returns:
    The Reweighting.
  """
  emb = np.asarray(emb, np.float64)
  i, j = np.asarray(i), np.asarray(j)
  t = np.asarray(target, np.float64)
  if emb.ndim != 2 or not (i.shape == j.shape == t.shape) or t.size < 2:
    raise InputError(
      f'emb {emb.shape}, pairs {i.shape} {j.shape}, target {t.shape}: pass'
      ' [n, d] and three [P] arrays, P >= 2'
    )
  mean = emb.mean(0)
  scale = emb.std(0)
  scale = np.where(scale > 0, scale, 1.0)
  z = _standardise(emb, mean, scale)
  d = z.shape[1]
  gram, dsum, dt = np.zeros((d, d)), np.zeros(d), np.zeros(d)
  t_mean = t.mean()
  for lo in range(0, t.size, chunk):
    sl = slice(lo, lo + chunk)
    dk = np.square(z[i[sl]] - z[j[sl]])
    gram += dk.T @ dk
    dsum += dk.sum(0)
    dt += dk.T @ (t[sl] - t_mean)
  gram -= np.outer(dsum, dsum) / t.size
  lam, vec = np.linalg.eigh(gram)
  ok = lam > lam[-1] * d * np.finfo(np.float64).eps
  root = np.sqrt(lam[ok])
  # ||A w - c||^2 = w^T G w - 2 w^T q + const, with G = A^T A, q = A^T c.
  a = root[:, None] * vec[:, ok].T
  c = (vec[:, ok].T @ dt) / root
  w = optimize.nnls(a, c, maxiter=50 * d)[0]
  intercept = t_mean - dsum @ w / t.size
  return Reweighting(w, float(intercept), mean, scale)


def reweighted_rdm(emb, fit: Reweighting) -> np.ndarray:
  """The reweighted RDM of the rows of emb: one Gram product.

  sum_k w_k (z_ak - z_bk)^2 is the squared Euclidean distance of the rows
  of z * sqrt(w) (`rdmjax.rsa.rdm.rdm`, float32), plus the intercept off
  the diagonal.

  Returns:
    [n, n] f32, symmetric, zero diagonal.
  """
  z = _standardise(emb, fit.mean, fit.scale) * np.sqrt(fit.weights)
  r = np.array(rdm_lib.rdm(z.astype(np.float32), 'sqeuclidean'))
  r += np.float32(fit.intercept)
  np.fill_diagonal(r, 0)
  return r


def reweighted_pairs(emb, fit: Reweighting, i, j) -> np.ndarray:
  """The reweighted dissimilarity of pairs (i[k], j[k]) of emb: [P] f64."""
  z = _standardise(emb, fit.mean, fit.scale)
  diff = z[np.asarray(i)] - z[np.asarray(j)]
  return fit.intercept + np.square(diff) @ fit.weights


def reweighted_rsa(
  emb_train,
  y_train,
  emb_test,
  y_test,
  metric: str = 'correlation',
  *,
  n_images: int = 2000,
  n_pairs: int = 200_000,
  seed: int = 0,
) -> dict:
  """Feature-reweighted RSA: fit on training pairs, score the test RDM.

  Training targets come from the RDM of a random subset of n_images
  training images (one Gram product, not a per-pair gather of response
  rows); up to n_pairs of its pairs are drawn uniformly without
  replacement.

  Args:
    emb_train: [n, d] training embeddings.
    y_train: [n, v] training responses.
    emb_test: [m, d] test embeddings.
    y_test: [m, v] test responses.
    metric: the response RDM metric (`rdmjax.rsa.rdm.rdm`).
    n_images: training images whose pairs are used.
    n_pairs: at most this many training pairs.
    seed: for the image subset and the pairs.

  Returns:
    dict: spearman (reweighted vs measured test RDM), rdm [m, m] f32 (the
    reweighted test RDM), fit (the Reweighting).
  """
  rng = np.random.default_rng(seed)
  n = np.shape(emb_train)[0]
  if np.shape(y_train)[0] != n:
    raise InputError(f'{n} embeddings, {np.shape(y_train)[0]} responses')
  sub = np.sort(rng.choice(n, min(n, n_images), replace=False))
  target = np.asarray(rdm_lib.rdm(np.asarray(y_train[sub]), metric))
  a, b = np.triu_indices(sub.size, 1)
  if a.size > n_pairs:
    pick = np.sort(rng.choice(a.size, n_pairs, replace=False))
    a, b = a[pick], b[pick]
  fit = fit_reweighted(emb_train, sub[a], sub[b], target[a, b])
  r = reweighted_rdm(emb_test, fit)
  rho = rdm_lib.compare_rdms(r, rdm_lib.rdm(np.asarray(y_test), metric))
  return dict(spearman=rho, rdm=r, fit=fit)
