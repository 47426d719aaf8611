"""Pair metrics (jit-able) and a streaming evaluator (host).

`pred`, `target`: [P] predicted and true dissimilarities; `mask`: [P], 1 =
count the pair (padding and, in the leaked variant, other splits' pairs are
0). R^2 is sklearn's `r2_score(target, pred)`; Spearman averages the ranks
of ties, as `scipy.stats.spearmanr`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from rdmjax.rsa.compare import avg_ranks, pearson

__all__ = [
  'PairMetricsAccumulator',
  'mse',
  'pearson',
  'r2',
  'spearman',
]


def weights(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  """[P] weights of x's pairs: 1 where `mask > 0` (all, without a mask),
  else 0; in x's dtype, at least float32. The one mask rule of the metrics
  and the losses (`rdmjax.training.losses`)."""
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  if mask is None:
    return jnp.ones(x.shape, dtype)
  return (mask > 0).astype(dtype)


def _wmean(x: jax.Array, w: jax.Array) -> jax.Array:
  return jnp.sum(w * x) / jnp.sum(w)


def spearman(
  pred: jax.Array, target: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Spearman rho of the masked pairs (ties get average ranks). Scalar."""
  return pearson(avg_ranks(pred, mask), avg_ranks(target, mask), mask)


def r2(
  pred: jax.Array, target: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Coefficient of determination, as sklearn.metrics.r2_score(target, pred).

  A constant target gives 1 for a perfect prediction, else 0 (sklearn's
  force_finite).
  """
  pred, target = pred.astype(jnp.float32), target.astype(jnp.float32)
  w = weights(pred, mask)
  ss_res = jnp.sum(w * jnp.square(target - pred))
  ss_tot = jnp.sum(w * jnp.square(target - _wmean(target, w)))
  safe = jnp.where(ss_tot > 0, ss_tot, 1.0)
  return jnp.where(
    ss_tot > 0, 1.0 - ss_res / safe, jnp.where(ss_res > 0, 0.0, 1.0)
  )


def mse(
  pred: jax.Array, target: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Mean squared error of the masked pairs. Scalar f32."""
  pred, target = pred.astype(jnp.float32), target.astype(jnp.float32)
  w = weights(pred, mask)
  return _wmean(jnp.square(pred - target), w)


class PairMetricsAccumulator:
  """Held-out metrics streamed over evaluation tiles, on the host.

  Pearson r and R^2 use every masked pair, from float64 sufficient
  statistics merged per tile with centring (Chan et al.), so 48M pairs of a
  full subject stay accurate. Spearman needs the values themselves: every
  masked pair's (pred, target) is kept (16 bytes a pair).
  """

  def __init__(self):
    self.n = 0
    self._mean = np.zeros(2)  # pred, target
    self._m2 = np.zeros(3)  # sum dp^2, dt^2, dp*dt
    self._sse = 0.0
    self._kept: list[np.ndarray] = []  # [k, 2]: pred, target

  def update(self, pred, target, mask=None) -> None:
    """Adds a tile: pred, target, mask [P] (device or host arrays)."""
    p = np.asarray(pred, np.float64).reshape(-1)
    t = np.asarray(target, np.float64).reshape(-1)
    if mask is not None:
      keep = np.asarray(mask).reshape(-1) > 0
      p, t = p[keep], t[keep]
    nb = p.size
    if nb == 0:
      return
    mb = np.array([p.mean(), t.mean()])
    dp, dt = p - mb[0], t - mb[1]
    m2b = np.array([dp @ dp, dt @ dt, dp @ dt])
    n = self.n + nb
    delta = mb - self._mean
    f = self.n * nb / n
    self._m2 += m2b + f * np.array(
      [delta[0] ** 2, delta[1] ** 2, delta[0] * delta[1]]
    )
    self._mean += delta * nb / n
    self.n = n
    self._sse += float(np.sum(np.square(t - p)))
    self._kept.append(np.stack([p, t], axis=1))

  def result(self) -> dict[str, float]:
    """{'r2', 'pearson', 'spearman', 'n_pairs', 'n_spearman'} (floats/ints)."""
    if self.n < 2:
      nan = float('nan')
      return dict(
        r2=nan, pearson=nan, spearman=nan, n_pairs=self.n, n_spearman=self.n
      )
    spp, stt, spt = self._m2
    r = spt / np.sqrt(spp * stt) if spp > 0 and stt > 0 else float('nan')
    if stt > 0:
      r2_ = 1.0 - self._sse / stt
    else:
      r2_ = 1.0 if self._sse == 0 else 0.0
    kept = np.concatenate(self._kept)
    rho = float(stats.spearmanr(kept[:, 0], kept[:, 1]).statistic)
    return dict(
      r2=float(r2_),
      pearson=float(r),
      spearman=rho,
      n_pairs=int(self.n),
      n_spearman=int(len(kept)),
    )
