"""Responses -> RDMs; streaming statistics of RDM entries (and, re-exported
from `rdmjax.compare`, RDM comparison).

Every metric is matrix-product based: rows are prepared once (centred and
normalised in float32), then Gram blocks `z_i @ z_j.T` give the distances.
Only the upper triangle of blocks is computed (block rows `i` against columns
`i*tile:`), then mirrored, so about (nb + 1) / (2 nb) of a full product runs.
`rdm_stats` streams over upper-triangle tiles and never holds n x n.

Single-subject functions: `vmap` at the call site; `jit` is inside. Under a
transformation (vmap, jit) the zero-variance check cannot run on the host and
such rows give NaN rows instead of an `InputError`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rdmjax.compare import (  # noqa: F401 - part of the kernels API
  COMPARE_METHODS,
  TRACES,
  compare_rdms,
  upper_triangle,
)
from rdmjax.errors import InputError

METRICS = ('correlation', 'euclidean', 'sqeuclidean', 'cosine')
PRECISIONS = ('float32', 'tf32', 'bf16_3x', 'bf16')


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


def _check(x, metric: str, precision: str) -> jax.Array:
  if metric not in METRICS:
    raise InputError(f'metric {metric!r} unknown: use one of {METRICS}')
  if precision not in PRECISIONS:
    raise InputError(f'precision {precision!r} unknown: use {PRECISIONS}')
  if getattr(x, 'ndim', None) != 2 or x.shape[0] < 2:
    shape = getattr(x, 'shape', None)
    raise InputError(f'responses shape {shape}: pass [n_images >= 2, d]')
  return jnp.asarray(x, jnp.float32)


@functools.partial(jax.jit, static_argnames='metric')
def _prepare(x: jax.Array, metric: str):
  """Rows ready for Gram products.

  Args:
    x: [n, d] f32 responses.
    metric: one of METRICS.

  Returns:
    z: [n, d] f32 (unit rows for correlation/cosine, column-centred rows for
      the euclidean metrics), sq: [n] f32 squared norms of z, bad: [n] bool
      rows whose metric is undefined (zero variance, zero norm, non-finite).
  """
  TRACES['prepare'] += 1
  finite = jnp.all(jnp.isfinite(x), axis=1)
  if metric in ('correlation', 'cosine'):
    c = x
    if metric == 'correlation':
      c = x - x.mean(1, keepdims=True)
      # A second centring pass removes the float32 rounding of the first mean.
      c = c - c.mean(1, keepdims=True)
    norm = jnp.linalg.norm(c, axis=1)
    # A constant row leaves ~1 ulp of its level after centring: relative test.
    tol = 8 * jnp.finfo(jnp.float32).eps * jnp.linalg.norm(x, axis=1)
    bad = ~finite | (norm <= tol) | (norm == 0)
    z = c / jnp.where(bad, 1.0, norm)[:, None]
    z = jnp.where(bad[:, None], jnp.nan, z)
    return z, jnp.ones_like(norm), bad
  # Distances do not change when columns are centred; it shrinks the norms and
  # so the cancellation in |a|^2 + |b|^2 - 2ab.
  c = x - x.mean(0, keepdims=True)
  return c, jnp.sum(c * c, axis=1), ~finite


def _raise_bad(bad: jax.Array, metric: str) -> None:
  if isinstance(bad, jax.core.Tracer):
    return  # inside a transformation: NaN rows, documented above
  bad = np.asarray(bad)
  if bad.any():
    idx = np.flatnonzero(bad)
    what = {
      'correlation': 'has zero variance (or non-finite values)',
      'cosine': 'is all zeros (or non-finite)',
    }.get(metric, 'has non-finite values')
    raise InputError(
      f'response row (image index) {idx[0]} {what}, {len(idx)} such rows in'
      f' all: drop them before the {metric} RDM'
    )


def _gram(a: jax.Array, b: jax.Array, precision: str) -> jax.Array:
  """a @ b.T -> f32; a, b already bf16 when precision == 'bf16'."""
  prec = {
    'float32': lax.Precision.HIGHEST,
    # Three bf16 products (hi*hi + hi*lo + lo*hi): ~f32 accuracy on tensor
    # cores at about 3x the bf16 cost.
    'bf16_3x': lax.DotAlgorithmPreset.BF16_BF16_F32_X3,
  }.get(precision)
  return lax.dot_general(
    a,
    b,
    (((1,), (1,)), ((), ())),
    precision=prec,
    preferred_element_type=jnp.float32,
  )


def _values(g, sq_a, sq_b, metric: str) -> jax.Array:
  if metric in ('correlation', 'cosine'):
    return jnp.clip(1.0 - g, 0.0, 2.0)
  d2 = jnp.maximum(sq_a[:, None] + sq_b[None, :] - 2.0 * g, 0.0)
  return jnp.sqrt(d2) if metric == 'euclidean' else d2


def _cast(z, precision):
  return z.astype(jnp.bfloat16) if precision == 'bf16' else z


def _symmetrise(upper: jax.Array) -> jax.Array:
  u = jnp.triu(upper, 1)  # exact zero diagonal, exact symmetry
  return u + u.T


def default_tile(n: int) -> int:
  """Row-block height: ~1024 rows (512 on CPU), <= 64 blocks, 128-aligned.

  On the 2-core CPU, n=2000 x d=10000: tile 2000 (one full product) 1.8 s,
  1024: 1.6 s, 512: 1.3 s (less of the triangle is computed twice).
  """
  target = 512 if jax.default_backend() == 'cpu' else 1024
  nb = min(64, max(1, -(-n // target)))
  t = -(-n // nb)
  return n if nb == 1 else -(-t // 128) * 128


@functools.partial(jax.jit, static_argnames=('metric', 'precision', 'tile'))
def _rdm_blocks(z, sq, *, metric: str, precision: str, tile: int):
  """Upper block rows `z[r:r+t] @ z[r:].T`, mirrored. z: [n, d]; -> [n, n]."""
  TRACES['rdm'] += 1
  n = z.shape[0]
  zc = _cast(z, precision)
  out = jnp.zeros((n, n), jnp.float32)
  for r in range(0, n, tile):  # static: at most 64 blocks
    e = min(r + tile, n)
    g = _gram(zc[r:e], zc[r:], precision)
    out = out.at[r:e, r:].set(_values(g, sq[r:e], sq[r:], metric))
  return _symmetrise(out)


def _constrain(x: jax.Array, sharding: NamedSharding) -> jax.Array:
  """Sharding constraint for Explicit (reshard) and Auto meshes alike."""
  explicit = jax.sharding.AxisType.Explicit in sharding.mesh.axis_types
  if explicit:
    return jax.sharding.reshard(x, sharding)
  return lax.with_sharding_constraint(x, sharding)


def _rdm_mesh(z, sq, mesh: Mesh, metric: str, precision: str):
  """Row blocks of the RDM on the devices of mesh axis 'data'."""
  if 'data' not in mesh.axis_names:
    raise InputError(f'mesh axes {mesh.axis_names}: add a "data" axis')
  n, nd = z.shape[0], mesh.shape['data']
  npad = -(-n // nd) * nd
  z = jnp.pad(z, ((0, npad - n), (0, 0)))
  sq = jnp.pad(sq, (0, npad - n))
  row, rep = NamedSharding(mesh, P('data')), NamedSharding(mesh, P())

  def local(z_rows, sq_rows, z_all, sq_all):
    g = _gram(_cast(z_rows, precision), _cast(z_all, precision), precision)
    return _values(g, sq_rows, sq_all, metric)

  f = jax.shard_map(
    local,
    mesh=mesh,
    in_specs=(P('data'), P('data'), P(), P()),
    out_specs=P('data'),
  )

  @jax.jit
  def run(zr, sr, za, sa):
    TRACES['rdm_mesh'] += 1
    u = jnp.triu(f(zr, sr, za, sa), 1)
    # Exact symmetry: the mirror is a transpose across devices.
    full = u + _constrain(u.T, row)
    # Rows stay sharded when n divides over the devices, else replicated.
    return full if npad == n else _constrain(full, rep)[:n, :n]

  zr, sr = jax.device_put((z, sq), row)
  za, sa = jax.device_put((z, sq), rep)
  return run(zr, sr, za, sa)


def rdm(
  x,
  metric: str = 'correlation',
  *,
  precision: str = 'float32',
  tile: int | None = None,
  mesh: Mesh | None = None,
  impl: str = 'auto',
) -> jax.Array:
  """The representational dissimilarity matrix of the rows of x.

  Args:
    x: [n_images, d] responses (numpy or jax; computed in float32).
    metric: 'correlation' (1 - Pearson r of two rows), 'euclidean' (L2),
      'sqeuclidean' (squared L2), 'cosine' (1 - cosine similarity).
    precision: 'float32' (full f32 products), 'tf32' (the backend default:
      TF32 on NVIDIA GPUs, f32 on CPU), 'bf16_3x' (three bf16 products per
      f32 product: near-f32 accuracy on tensor cores), 'bf16' (bf16 inputs,
      f32 sums).
    tile: block-row height (default `default_tile(n)`); only blocks on or
      above the diagonal are computed.
    mesh: a Mesh with a 'data' axis: row blocks are computed on its devices.
    impl: 'xla' (jitted triangular tiles), 'blas' (the Gram through numpy's
      BLAS on the host: `z @ z.T` is one symmetric rank-k update, half a
      product), or 'auto': 'blas' on a CPU backend for float32/tf32 without
      mesh or tile, else 'xla'. XLA's CPU matrix product runs at ~40% of
      OpenBLAS here (2000 x 39548: 4.1 s against numpy's 1.55 s syrk).

  Returns:
    [n_images, n_images] f32, symmetric with an exact zero diagonal.
  """
  if impl not in ('auto', 'xla', 'blas'):
    raise InputError(f'impl {impl!r} unknown: use auto, xla or blas')
  x = _check(x, metric, precision)
  z, sq, bad = _prepare(x, metric)
  _raise_bad(bad, metric)
  if mesh is not None:
    return _rdm_mesh(z, sq, mesh, metric, precision)
  if impl == 'auto':
    host = jax.default_backend() == 'cpu' and precision != 'bf16'
    traced = isinstance(z, jax.core.Tracer)
    impl = 'blas' if host and tile is None and not traced else 'xla'
  if impl == 'blas':
    return _rdm_blas(np.asarray(z), np.asarray(sq), metric)
  n = x.shape[0]
  tile = max(int(tile or default_tile(n)), -(-n // 64))
  return _rdm_blocks(z, sq, metric=metric, precision=precision, tile=tile)


def _rdm_blas(z: np.ndarray, sq: np.ndarray, metric: str) -> jax.Array:
  """The host path: one BLAS call for the Gram, in-place elementwise ops."""
  g = z @ z.T  # numpy sees z and z.T share memory: ssyrk, half the flops
  if metric in ('correlation', 'cosine'):
    np.subtract(1.0, g, out=g)
    np.clip(g, 0.0, 2.0, out=g)
  else:
    for r in range(0, g.shape[0], 1024):  # bounded temporaries
      # (sq_i + sq_j) first: the same sum in both triangles, so symmetric.
      rows = g[r : r + 1024]
      rows *= -2.0
      rows += sq[r : r + 1024, None] + sq[None, :]
    np.maximum(g, 0.0, out=g)
    if metric == 'euclidean':
      np.sqrt(g, out=g)
  # syrk fills both triangles from one: exactly symmetric already.
  np.fill_diagonal(g, 0.0)
  return jnp.asarray(g)


def _tile_fn(z, sq, *, metric: str, precision: str, tile: int):
  """Pads rows to whole tiles; returns (tile pairs i <= j, tile -> values)."""
  n = z.shape[0]
  nb = -(-n // tile)
  zc = _cast(jnp.pad(z, ((0, nb * tile - n), (0, 0))), precision)
  sq = jnp.pad(sq, (0, nb * tile - n))
  bi, bj = (jnp.asarray(v, jnp.int32) for v in np.triu_indices(nb))

  def values(p):
    r, c = bi[p] * tile, bj[p] * tile
    a, b = (lax.dynamic_slice_in_dim(zc, s, tile) for s in (r, c))
    sa, sb = (lax.dynamic_slice_in_dim(sq, s, tile) for s in (r, c))
    v = _values(_gram(a, b, precision), sa, sb, metric)
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
  TRACES['topk'] += 1
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
  TRACES['hist'] += 1
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
  x = _check(x, metric, precision)
  n = x.shape[0]
  if not 1 <= k <= n * (n - 1) // 2:
    raise InputError(f'k={k}: pass 1 <= k <= n(n-1)/2 = {n * (n - 1) // 2}')
  if bins < 1:
    raise InputError(f'bins={bins}: pass bins >= 1')
  z, sq, bad = _prepare(x, metric)
  _raise_bad(bad, metric)
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
  if not value_range[0] < value_range[1]:
    value_range = (value_range[0], value_range[0] + 1.0)  # np.histogram's
  edges = np.histogram_bin_edges(
    np.zeros(0, np.float32), bins=bins, range=value_range
  ).astype(np.float32)
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
