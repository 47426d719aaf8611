"""The primitives of every RDM metric: rows prepared once, Gram values.

1 - Pearson, Euclidean, squared Euclidean and 1 - cosine all come from a
Gram product of prepared rows (centred and scaled for correlation, as they
are for the others) and the rows' squared norms. `rdmjax.rsa.rdm` (whole
matrices), `rdmjax.rsa.summary` (streamed statistics) and the pair targets
of training (`cross_rdm`, `paired`) share this code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rdmjax.errors import InputError

METRICS = ('correlation', 'euclidean', 'sqeuclidean', 'cosine')


PRECISIONS = ('float32', 'tf32', 'bf16_3x', 'bf16')


def _check_shape(x, metric: str, precision: str) -> None:
  _check_names(metric, precision)
  if getattr(x, 'ndim', None) != 2 or x.shape[0] < 2:
    shape = getattr(x, 'shape', None)
    raise InputError(f'responses shape {shape}: pass [n_images >= 2, d]')


def check_input(x, metric: str, precision: str) -> jax.Array:
  _check_shape(x, metric, precision)
  return jnp.asarray(x, jnp.float32)


def width_bucket(d: int) -> int:
  """The width the device path pads d columns to: a multiple of
  2^(bit_length(d) - 4), at most 1/8 more (39548 -> 40960, 2000 -> 2048), so
  ROIs of similar width share one compiled program."""
  q = 1 << max(d.bit_length() - 4, 0)
  return -(-d // q) * q


def _rows(
  x: jax.Array,
  metric: str,
  centre: jax.Array | None = None,
  d_valid: jax.Array | None = None,
):
  """Rows ready for Gram products (jit-able).

  Args:
    x: [n, d] f32 responses.
    metric: one of METRICS.
    centre: [d] the column centre of the euclidean metrics (default x's
      column mean); pass one centre for two sets of rows that are compared.
    d_valid: with x zero-padded to more columns, the true column count (a
      traced scalar: one program serves every width up to d); padded
      columns stay zero in z.

  Returns:
    z: [n, d] f32 (unit rows for correlation/cosine, column-centred rows for
      the euclidean metrics), sq: [n] f32 squared norms of z, bad: [n] bool
      rows whose metric is undefined (zero variance, zero norm, non-finite).
  """
  x = x.astype(jnp.float32)
  finite = jnp.all(jnp.isfinite(x), axis=1)
  if metric in ('correlation', 'cosine'):
    c = x
    if metric == 'correlation':
      if d_valid is None:
        c = x - x.mean(1, keepdims=True)
        # A second centring pass removes the float32 rounding of the first.
        c = c - c.mean(1, keepdims=True)
      else:
        cols = jnp.arange(x.shape[1]) < d_valid
        d = d_valid.astype(jnp.float32)
        c = jnp.where(cols, x - x.sum(1, keepdims=True) / d, 0.0)
        c = jnp.where(cols, c - c.sum(1, keepdims=True) / d, 0.0)
    norm = jnp.linalg.norm(c, axis=1)
    # A constant row leaves ~1 ulp of its level after centring: relative test.
    tol = 8 * jnp.finfo(jnp.float32).eps * jnp.linalg.norm(x, axis=1)
    bad = ~finite | (norm <= tol) | (norm == 0)
    z = c / jnp.where(bad, 1.0, norm)[:, None]
    z = jnp.where(bad[:, None], jnp.nan, z)
    return z, jnp.ones_like(norm), bad
  # Distances do not change when columns are centred; it shrinks the norms and
  # so the cancellation in |a|^2 + |b|^2 - 2ab.
  c = x - (x.mean(0, keepdims=True) if centre is None else centre)
  return c, jnp.sum(c * c, axis=1), ~finite


prepare_rows = jax.jit(_rows, static_argnames='metric')


def raise_bad_rows(bad, metric: str, x=None, *, item: int | None = None):
  """Raises a one-line InputError naming the rows whose metric is undefined.

  Args:
    bad: [n] bool rows (or [k, n] of a batch; a traced array: nothing to
      check, the rows are NaN).
    metric: one of METRICS.
    x: the responses ([n, d], or [k, n, d] with a batch), to say why: where
      non-finite values (NaN or inf) make rows bad and are fewer columns
      than rows (one NaN voxel makes every row bad), the message names those
      columns and says to drop or impute them; else the rows, as for
      zero-variance (correlation) or all-zero (cosine) rows. Without x the
      rows, the cause left open.
    item: the batch index to name.
  """
  if isinstance(bad, jax.core.Tracer):
    return  # inside a transformation: NaN rows, documented above
  bad = np.asarray(bad)
  if not bad.any():
    return
  if bad.ndim == 2:  # a batch: the first item with bad rows
    b = int(np.flatnonzero(bad.any(1))[0])
    raise_bad_rows(bad[b], metric, None if x is None else x[b], item=b)
  where = '' if item is None else f'batch item {item}: '
  if x is None:
    what = {
      'correlation': 'has zero variance (or non-finite values)',
      'cosine': 'is all zeros (or non-finite)',
    }.get(metric, 'has non-finite values')
    raise InputError(where + _rows_message(np.flatnonzero(bad), what, metric))
  rows, cols = _non_finite(x)
  zero = bad & ~rows
  more = ''
  if zero.any():
    idx = np.flatnonzero(zero)
    kind = 'all zeros' if metric == 'cosine' else 'zero variance'
    more = f'; also {len(idx)} row(s) of {kind} (image index {_first(idx)})'
  if rows.any() and len(cols) <= rows.sum():
    idx = np.flatnonzero(rows)
    those = 'that column' if len(cols) == 1 else 'those columns'
    raise InputError(
      f'{where}responses have non-finite values (NaN or inf) in'
      f' {len(cols)} of {x.shape[1]} columns (vertices/voxels; index'
      f' {_first(cols)}), which leave {len(idx)} response row(s) (image index'
      f' {_first(idx)}) undefined for the {metric} RDM: drop or impute'
      f' {those}{more}'
    )
  if rows.any():
    raise InputError(
      where
      + _rows_message(
        np.flatnonzero(rows), 'has non-finite values (NaN or inf)', metric
      )
      + more
    )
  what = 'is all zeros' if metric == 'cosine' else 'has zero variance'
  raise InputError(where + _rows_message(np.flatnonzero(zero), what, metric))


def _rows_message(idx, what: str, metric: str) -> str:
  return (
    f'response row (image index) {idx[0]} {what}, {len(idx)} such rows in'
    f' all: drop them before the {metric} RDM'
  )


def _first(idx, k: int = 5) -> str:
  """'3, 17, 40' or '3, 17, 40, 41, 52, ...' (the first k indices)."""
  head = ', '.join(str(int(i)) for i in idx[:k])
  return head + (', ...' if len(idx) > k else '')


def _non_finite(x):
  """(rows [n] bool, column indices) of x's non-finite values; in row
  blocks (no n x d temporary)."""
  x = np.asarray(x)
  rows = np.zeros(x.shape[0], bool)
  cols = np.zeros(x.shape[1], bool)
  for r in range(0, x.shape[0], 1024):
    cells = ~np.isfinite(x[r : r + 1024])
    rows[r : r + 1024] = cells.any(1)
    cols |= cells.any(0)
  return rows, np.flatnonzero(cols)


def gram(a: jax.Array, b: jax.Array, precision: str) -> jax.Array:
  """a @ b.T -> f32 over the last axis, batched over any leading axes; a, b
  already bf16 when precision == 'bf16'."""
  prec = {
    'float32': lax.Precision.HIGHEST,
    # Three bf16 products (hi*hi + hi*lo + lo*hi): ~f32 accuracy on tensor
    # cores at about 3x the bf16 cost.
    'bf16_3x': lax.DotAlgorithmPreset.BF16_BF16_F32_X3,
  }.get(precision)
  batch = tuple(range(a.ndim - 2))
  return lax.dot_general(
    a,
    b,
    (((a.ndim - 1,), (b.ndim - 1,)), (batch, batch)),
    precision=prec,
    preferred_element_type=jnp.float32,
  )


def values_from_gram(g, sq_a, sq_b, metric: str) -> jax.Array:
  """Dissimilarities from Gram values g and squared norms (broadcastable)."""
  if metric in ('correlation', 'cosine'):
    return jnp.clip(1.0 - g, 0.0, 2.0)
  d2 = jnp.maximum(sq_a + sq_b - 2.0 * g, 0.0)
  return jnp.sqrt(d2) if metric == 'euclidean' else d2


def _check_names(metric: str, precision: str) -> None:
  if metric not in METRICS:
    raise InputError(f'metric {metric!r} unknown: use one of {METRICS}')
  if precision not in PRECISIONS:
    raise InputError(f'precision {precision!r} unknown: use {PRECISIONS}')


def cross_rdm(
  a, b, metric: str = 'correlation', precision: str = 'float32'
) -> jax.Array:
  """Dissimilarity of every (row of a, row of b) pair: one matrix product.

  Jit-able (no host checks): pair targets of a block (a is b) or of an
  evaluation tile. Undefined rows (zero variance for correlation) give NaN.

  Args:
    a: [t1, d] rows.
    b: [t2, d] rows.
    metric: one of METRICS.
    precision: one of PRECISIONS (see `rdm`).

  Returns:
    [t1, t2] f32.
  """
  _check_names(metric, precision)
  same = b is a  # a block: its rows are prepared once
  a = jnp.asarray(a, jnp.float32)
  centre = a.mean(0, keepdims=True)
  za, sqa, _ = _rows(a, metric, centre)
  if same:
    zb, sqb = za, sqa
  else:
    zb, sqb, _ = _rows(jnp.asarray(b, jnp.float32), metric, centre)
  g = gram(cast_for(za, precision), cast_for(zb, precision), precision)
  return values_from_gram(g, sqa[:, None], sqb[None, :], metric)


def paired(a, b, metric: str = 'correlation') -> jax.Array:
  """Dissimilarity of row k of a and row k of b, for every k (jit-able).

  The per-pair row gather (two response rows per pair): the baseline that
  block batches replace. a, b: [P, d]; returns [P] f32 (float32 sums).
  """
  _check_names(metric, 'float32')
  a = jnp.asarray(a, jnp.float32)
  centre = a.mean(0, keepdims=True)
  za, sqa, _ = _rows(a, metric, centre)
  zb, sqb, _ = _rows(jnp.asarray(b, jnp.float32), metric, centre)
  return values_from_gram(jnp.sum(za * zb, axis=1), sqa, sqb, metric)


def cast_for(z, precision):
  return z.astype(jnp.bfloat16) if precision == 'bf16' else z


def _symmetrise(upper: jax.Array) -> jax.Array:
  """[..., n, n]: the strict upper triangle mirrored (exact zero diagonal,
  exact symmetry)."""
  u = jnp.triu(upper, 1)
  return u + u.swapaxes(-1, -2)


def default_tile(n: int) -> int:
  """Row-block height: ~1024 rows (512 on CPU), <= 64 blocks, 128-aligned.

  On the 2-core CPU, n=2000 x d=10000: tile 2000 (one full product) 1.8 s,
  1024: 1.6 s, 512: 1.3 s (less of the triangle is computed twice).
  """
  target = 512 if jax.default_backend() == 'cpu' else 1024
  nb = min(64, max(1, -(-n // target)))
  t = -(-n // nb)
  return n if nb == 1 else -(-t // 128) * 128
