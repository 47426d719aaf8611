"""Statistics of an RDM's entries i < j: extreme pairs and a histogram.

`rdm_stats(x, ...)` never holds n x n: it scans upper-triangle tiles of
the RDM (each one Gram block of `rdmjax.rsa.rdm`) with `lax.scan`, so a
full subject (48M pairs) streams on any device. `matrix_stats(r, ...)` takes
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
from rdmjax.rsa.rows import (
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
  raise_bad_rows(bad, metric, x)  # names NaN columns where they are the cause
  tile = max(int(tile or default_tile(n)), int(np.ceil(np.sqrt(k))))
  kw = dict(metric=metric, precision=precision, tile=tile)
  # numpy scalars and arrays as arguments: a jnp constructor outside jit
  # compiles a program of its own.
  target = np.float32(0.0 if closest_to is None else closest_to)
  lo, hi, cl = jax.device_get(_topk_pass(z, sq, target, k=k, **kw))
  ext = [
    Extremes(np.asarray(e[1]), np.asarray(e[2]), np.asarray(e[3]))
    for e in (lo, hi, cl)
  ]
  if value_range is None:
    value_range = (float(ext[0].values[0]), float(ext[1].values[0]))
  edges = _histogram_edges(bins, value_range)
  counts = np.asarray(_hist_pass(z, sq, edges, **kw))
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


# Rows per block of the in-memory passes: temporaries of [ROW_BLOCK, n]
# (10 MB at n = 9841) instead of several [n, n] (387 MB each).
ROW_BLOCK = 256


def _row_block(r, b, size: int):
  """Rows [s, s + size) of r with s = min(b * size, n - size) (no padding
  copy of r) and the mask of their entries i < j not in an earlier block."""
  n = r.shape[0]
  s = jnp.minimum(b * size, n - size)
  rows = lax.dynamic_slice_in_dim(r, s, size, 0)
  gi = s + lax.broadcasted_iota(jnp.int32, (size, n), 0)
  gj = lax.broadcasted_iota(jnp.int32, (size, n), 1)
  return rows, gi, (gi < gj) & (gi >= b * size)


def _blocks(n: int, block: int) -> tuple[int, int]:
  size = min(n, block)
  return size, -(-n // size)


def _merge_top(best, cand, k: int):
  """The k largest keys of best and cand: (key, value, i, j) tuples."""
  cat = [jnp.concatenate([a, b]) for a, b in zip(best, cand)]
  _, pos = lax.top_k(cat[0], k)
  return tuple(a[pos] for a in cat)


@functools.partial(jax.jit, static_argnames=('k', 'block'))
def _summary_pass(r, target, *, k: int, block: int):
  """Extremes (row-wise top-k, then over rows) and the sum of the entries
  i < j of r: [n, n], a block of rows at a time."""
  r = _unsharded(r)
  n = r.shape[0]
  size, nb = _blocks(n, block)
  kk = min(k, n)

  def body(b, carry):
    best, total = carry
    rows, gi, ok = _row_block(r, b, size)
    new = []
    for keys, key in zip(best, (-rows, rows, -jnp.abs(rows - target))):
      kt, cols = lax.top_k(jnp.where(ok, key, -jnp.inf), kk)  # [size, kk]
      top, pos = lax.top_k(kt.ravel(), min(k, size * kk))
      i, j = gi[:, 0][pos // kk], cols.ravel()[pos]
      new.append(_merge_top(keys, (top, rows[i - gi[0, 0], j], i, j), k))
    return tuple(new), total + jnp.sum(jnp.where(ok, rows, 0.0))

  empty = (
    jnp.full(k, -jnp.inf),
    jnp.zeros(k, r.dtype),
    jnp.zeros(k, jnp.int32),
    jnp.zeros(k, jnp.int32),
  )
  best, total = lax.fori_loop(0, nb, body, ((empty,) * 3, jnp.float32(0)))
  return tuple(e[1:] for e in best), total / (n * (n - 1) // 2)


@functools.partial(jax.jit, static_argnames='block')
def _histogram_pass(r, edges, mean, *, block: int):
  """Counts [bins] of the entries i < j of r, bins as np.histogram's, and
  their sum of squared deviations from mean; a block of rows at a time."""
  bins = edges.shape[0] - 1
  r = _unsharded(r)
  size, nb = _blocks(r.shape[0], block)

  def body(b, carry):
    counts, ss = carry
    rows, _, ok = _row_block(r, b, size)
    v = rows.ravel()
    idx = jnp.searchsorted(edges, v, side='right') - 1
    idx = jnp.where(v == edges[-1], bins - 1, idx)  # last bin is closed
    keep = ok.ravel() & (idx >= 0) & (idx < bins)
    counts += jnp.bincount(jnp.where(keep, idx, bins), length=bins + 1)
    return counts, ss + jnp.sum(jnp.where(ok, jnp.square(rows - mean), 0.0))

  counts, ss = lax.fori_loop(
    0, nb, body, (jnp.zeros(bins + 1, jnp.int32), jnp.float32(0))
  )
  return counts[:-1], ss


def _as_f32(r):
  """r as a float32 device array, with no compiled conversion: as it is
  (float32 already) or cast by numpy and put on the device (the two passes
  read it there)."""
  if isinstance(r, (jax.Array, jax.core.Tracer)):
    return r if r.dtype == jnp.float32 else r.astype(jnp.float32)
  return jax.device_put(np.asarray(r, np.float32))


def matrix_stats(
  r,
  *,
  k: int = 5,
  closest_to: float | None = None,
  bins: int = 100,
  metric: str = '',
  block: int = ROW_BLOCK,
) -> Summary:
  """`rdm_stats` and the moments of an RDM already in memory.

  Two passes over r, a block of ROW_BLOCK rows at a time (extremes and
  the mean, then the histogram over the data's range and the variance), no
  Gram product and no [n, n] temporary; equal to `rdm_stats` of the rows r came
  from (up to float32 near-ties).

  Args:
    r: [n, n] RDM (device or host; only entries i < j are read).
    k, closest_to, bins: as `rdm_stats`.
    metric: recorded in the result.
    block: rows per block of the passes.

  Returns:
    Summary(stats, mean, std), host values.
  """
  r = _as_f32(r)
  n = r.shape[0]
  _check_k_bins(n, k, bins)
  # numpy scalars and arrays as arguments, as in `rdm_stats`.
  target = np.float32(0.0 if closest_to is None else closest_to)
  ext, mean = jax.device_get(_summary_pass(r, target, k=k, block=block))
  ext = [Extremes(*(np.asarray(a) for a in e)) for e in ext]
  edges = _histogram_edges(
    bins, (float(ext[0].values[0]), float(ext[1].values[0]))
  )
  counts, ss = jax.device_get(
    _histogram_pass(r, edges, np.float32(mean), block=block)
  )
  counts = np.asarray(counts, np.int64)
  std = np.sqrt(ss / (n * (n - 1) // 2))
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
