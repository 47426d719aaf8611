"""Statistics of an RDM's entries i < j: extreme pairs and a histogram.

`rdm_stats(x, ...)` never holds n x n: it scans upper-triangle tiles of
the RDM (each one Gram block of `rdmjax.kernels`) with `lax.scan`, so a
full subject (48M pairs) streams on any device. `summarize(r, ...)` takes
the same statistics (and the moments) from an RDM already in memory, with
no second Gram pass: one compiled program per n, whatever the metric or ROI.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rdmjax.errors import InputError
from rdmjax.kernels import (
  cast_for,
  check_input,
  default_tile,
  gram,
  prepare_rows,
  raise_bad_rows,
  values_from_gram,
)


class Extremes(NamedTuple):
  values: np.ndarray  # [k] f32
  i: np.ndarray  # [k] int, i < j
  j: np.ndarray  # [k] int


class RdmStats(NamedTuple):
  lowest: Extremes  # ascending values
  highest: Extremes  # descending values
  closest: Extremes | None  # ascending |value - closest_to|
  hist_counts: np.ndarray  # [bins] int64, over the n(n-1)/2 pairs i < j
  hist_edges: np.ndarray  # [bins + 1] f32, as np.histogram_bin_edges
  n: int
  metric: str


def _tile_fn(z, sq, *, metric: str, precision: str, tile: int):
  """Pads rows to whole tiles; returns (tile pairs i <= j, tile -> values)."""
  n = z.shape[0]
  nb = -(-n // tile)
  zc = cast_for(jnp.pad(z, ((0, nb * tile - n), (0, 0))), precision)
  sq = jnp.pad(sq, (0, nb * tile - n))
  bi, bj = (jnp.asarray(v, jnp.int32) for v in np.triu_indices(nb))

  def values(p):
    r, c = bi[p] * tile, bj[p] * tile
    a, b = (lax.dynamic_slice_in_dim(zc, s, tile) for s in (r, c))
    sa, sb = (lax.dynamic_slice_in_dim(sq, s, tile) for s in (r, c))
    v = values_from_gram(
      gram(a, b, precision), sa[:, None], sb[None, :], metric
    )
    gi = r + jnp.arange(tile)[:, None]
    gj = c + jnp.arange(tile)[None, :]
    valid = (gi < gj) & (gj < n)
    return v.ravel(), jnp.broadcast_to(gi, v.shape).ravel(), gj, valid.ravel()

  return bi.shape[0], values


@functools.partial(
  jax.jit, static_argnames=('metric', 'precision', 'tile', 'k')
)
def _topk_pass(z, sq, target, *, metric, precision, tile, k):
  """The k lowest, highest and closest-to-target pairs i < j, streamed."""
  n_tiles, values = _tile_fn(
    z, sq, metric=metric, precision=precision, tile=tile
  )
  empty = (
    jnp.full(k, -jnp.inf),
    jnp.zeros(k),
    jnp.full(k, -1),
    jnp.full(k, -1),
  )

  def body(carry, p):
    v, gi, gj, valid = values(p)
    gj = jnp.broadcast_to(gj, (tile, tile)).ravel()
    keys = (-v, v, -jnp.abs(v - target))
    out = []
    for best, key in zip(carry, keys):
      key = jnp.where(valid, key, -jnp.inf)
      kt, idx = lax.top_k(key, k)
      cand = (kt, v[idx], gi[idx], gj[idx])
      both = tuple(jnp.concatenate([x, y]) for x, y in zip(best, cand))
      _, keep = lax.top_k(both[0], k)
      out.append(tuple(x[keep] for x in both))
    return tuple(out), None

  carry, _ = lax.scan(body, (empty,) * 3, jnp.arange(n_tiles))
  return carry


@functools.partial(jax.jit, static_argnames=('metric', 'precision', 'tile'))
def _hist_pass(z, sq, edges, *, metric, precision, tile):
  """Per-tile counts [n_tiles, bins] int32, bins as np.histogram's."""
  n_tiles, values = _tile_fn(
    z, sq, metric=metric, precision=precision, tile=tile
  )
  bins = edges.shape[0] - 1

  def body(_, p):
    v, _, _, valid = values(p)
    idx = jnp.searchsorted(edges, v, side='right') - 1
    idx = jnp.where(v == edges[-1], bins - 1, idx)  # last bin is closed
    ok = valid & (idx >= 0) & (idx < bins)
    return None, jnp.bincount(jnp.where(ok, idx, bins), length=bins + 1)[:-1]

  return lax.scan(body, None, jnp.arange(n_tiles))[1]


def _histogram_edges(bins: int, value_range) -> np.ndarray:
  """np.histogram's edges for (lo, hi), as float32 (a degenerate range
  becomes (lo, lo + 1), as np.histogram does)."""
  if not value_range[0] < value_range[1]:
    value_range = (value_range[0], value_range[0] + 1.0)
  return np.histogram_bin_edges(
    np.zeros(0, np.float32), bins=bins, range=value_range
  ).astype(np.float32)


def _check_k_bins(n: int, k: int, bins: int) -> None:
  if not 1 <= k <= n * (n - 1) // 2:
    raise InputError(f'k={k}: pass 1 <= k <= n(n-1)/2 = {n * (n - 1) // 2}')
  if bins < 1:
    raise InputError(f'bins={bins}: pass bins >= 1')


def rdm_stats(
  x,
  metric: str = 'correlation',
  *,
  k: int = 5,
  closest_to: float | None = None,
  bins: int = 100,
  value_range: tuple[float, float] | None = None,
  precision: str = 'float32',
  tile: int | None = None,
) -> RdmStats:
  """Extreme pairs and a histogram of RDM entries i < j, never n x n.

  Streams over upper-triangle tiles of size `tile` (device memory: a few
  tile x tile blocks). Without `value_range` a first pass finds the minimum
  and maximum, and a second pass fills the histogram.

  Args:
    x: [n_images, d] responses.
    metric: as `rdm`.
    k: pairs per extreme.
    closest_to: also return the k pairs with |value - closest_to| smallest.
    bins: histogram bins (equal width, as np.histogram).
    value_range: (lo, hi) for the histogram; default the data's range.
    precision: as `rdm`.
    tile: rows per tile side (default `default_tile(n)`).

  Returns:
    RdmStats with host numpy arrays.
  """
  x = check_input(x, metric, precision)
  n = x.shape[0]
  _check_k_bins(n, k, bins)
  z, sq, bad = prepare_rows(x, metric)
  raise_bad_rows(bad, metric)
  tile = max(int(tile or default_tile(n)), int(np.ceil(np.sqrt(k))))
  kw = dict(metric=metric, precision=precision, tile=tile)
  target = jnp.float32(0.0 if closest_to is None else closest_to)
  lo, hi, cl = jax.device_get(_topk_pass(z, sq, target, k=k, **kw))
  ext = [
    Extremes(np.asarray(e[1]), np.asarray(e[2]), np.asarray(e[3]))
    for e in (lo, hi, cl)
  ]
  if value_range is None:
    value_range = (float(ext[0].values[0]), float(ext[1].values[0]))
  edges = _histogram_edges(bins, value_range)
  counts = np.asarray(_hist_pass(z, sq, jnp.asarray(edges), **kw))
  return RdmStats(
    lowest=ext[0],
    highest=ext[1],
    closest=None if closest_to is None else ext[2],
    hist_counts=counts.astype(np.int64).sum(0),
    hist_edges=edges,
    n=n,
    metric=metric,
  )


class Summary(NamedTuple):
  """`RdmStats` of an RDM in memory, with the moments of its entries i < j."""

  stats: RdmStats
  mean: float
  std: float


def _unsharded(a: jax.Array) -> jax.Array:
  """a replicated, where its type carries an Explicit-axes sharding (sorts
  and top_k need the whole axis on one device)."""
  sharding = jax.typeof(a).sharding
  spec = getattr(sharding, 'spec', None)
  if spec and any(p is not None for p in spec):
    return jax.sharding.reshard(a, sharding.update(spec=()))
  return a


def _upper(n: int) -> jax.Array:
  i = lax.broadcasted_iota(jnp.int32, (n, n), 0)
  return i < lax.broadcasted_iota(jnp.int32, (n, n), 1)


@functools.partial(jax.jit, static_argnames='k')
def _summary_pass(r, target, *, k: int):
  """Extremes (row-wise top-k, then over rows) and moments of r: [n, n]."""
  r = _unsharded(r)
  n = r.shape[0]
  upper = _upper(n)
  kk = min(k, n)

  def extremes(key):
    kt, cols = lax.top_k(jnp.where(upper, key, -jnp.inf), kk)  # [n, kk]
    _, pos = lax.top_k(kt.ravel(), k)
    i, j = pos // kk, cols.ravel()[pos]
    return r[i, j], i, j

  out = tuple(extremes(key) for key in (-r, r, -jnp.abs(r - target)))
  m = n * (n - 1) // 2
  mean = jnp.sum(jnp.where(upper, r, 0.0)) / m
  var = jnp.sum(jnp.where(upper, jnp.square(r - mean), 0.0)) / m
  return out, mean, jnp.sqrt(var)


@jax.jit
def _histogram_pass(r, edges):
  """Counts [bins] of the entries i < j of r, bins as np.histogram's."""
  bins = edges.shape[0] - 1
  r = _unsharded(r)
  v = r.ravel()
  idx = jnp.searchsorted(edges, v, side='right') - 1
  idx = jnp.where(v == edges[-1], bins - 1, idx)  # last bin is closed
  ok = _upper(r.shape[0]).ravel() & (idx >= 0) & (idx < bins)
  return jnp.bincount(jnp.where(ok, idx, bins), length=bins + 1)[:-1]


def summarize(
  r,
  *,
  k: int = 5,
  closest_to: float | None = None,
  bins: int = 100,
  metric: str = '',
) -> Summary:
  """`rdm_stats` and the moments of an RDM already in memory.

  Two passes over r (extremes and moments, then the histogram over the
  data's range), no Gram product; equal to `rdm_stats` of the rows r came
  from (up to float32 near-ties).

  Args:
    r: [n, n] RDM (device or host; only entries i < j are read).
    k, closest_to, bins: as `rdm_stats`.
    metric: recorded in the result.

  Returns:
    Summary(stats, mean, std), host values.
  """
  r = jnp.asarray(r, jnp.float32)
  n = r.shape[0]
  _check_k_bins(n, k, bins)
  target = jnp.float32(0.0 if closest_to is None else closest_to)
  ext, mean, std = jax.device_get(_summary_pass(r, target, k=k))
  ext = [Extremes(*(np.asarray(a) for a in e)) for e in ext]
  edges = _histogram_edges(
    bins, (float(ext[0].values[0]), float(ext[1].values[0]))
  )
  counts = np.asarray(_histogram_pass(r, jnp.asarray(edges)), np.int64)
  stats = RdmStats(
    lowest=ext[0],
    highest=ext[1],
    closest=None if closest_to is None else ext[2],
    hist_counts=counts,
    hist_edges=edges,
    n=n,
    metric=metric,
  )
  return Summary(stats, float(mean), float(std))
