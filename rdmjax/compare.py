"""Comparing RDMs: Spearman, Pearson and Kendall's tau-a on upper triangles.

`compare_rdms(a, b, method)` takes square [n, n] RDMs or their condensed
upper triangles (scipy `squareform` order). Spearman is exact at any size:
average ranks (ties as scipy's `rankdata`) are held as integers 2 * rank,
centred by m + 1 without rounding, and their products summed exactly in
integer limbs on the device (or, on a CPU backend, ranked by scipy and summed
in float64 on the host); float32 ranks would round above 2^24 entries (~5800
images). tau-a counts concordant and discordant pairs exactly with an
O(m log^2 m) merge sort (rsatoolbox's definition: no tie correction).
`pearson` and `avg_ranks` (with an optional mask) are the jit-able Pearson
and ranking of the pair metrics (float32: for batches, below 2^23 entries).
`compare_rdms` is public as `rdmjax.kernels.compare_rdms`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rdmjax.errors import InputError

COMPARE_METHODS = ('spearman', 'pearson', 'kendall_tau_a')


@jax.jit
def _upper(r: jax.Array) -> jax.Array:
  n = r.shape[0]
  i = lax.broadcasted_iota(jnp.int32, (n, n), 0)
  upper = i < lax.broadcasted_iota(jnp.int32, (n, n), 1)
  # Positions from an iota mask on the device: no host index arrays.
  return r.ravel()[jnp.flatnonzero(upper.ravel(), size=n * (n - 1) // 2)]


def upper_triangle(r) -> jax.Array:
  """r: [n, n] -> [n(n-1)/2], the entries i < j in scipy squareform order."""
  r = jnp.asarray(r)
  if r.ndim != 2 or r.shape[0] != r.shape[1]:
    raise InputError(f'RDM shape {r.shape}: pass a square [n, n] matrix')
  return _upper(r)


def _total(v: jax.Array) -> jax.Array:
  """Sum with two-level (blocked) partial sums, to bound f32 rounding."""
  m = v.shape[0]
  blk = max(1, int(np.sqrt(m)))
  v = jnp.pad(v, (0, -m % blk))
  return v.reshape(-1, blk).sum(1).sum()


def pearson(
  a: jax.Array, b: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
  """Pearson r of a, b: [m] over the entries with mask > 0 (default all).

  Centred, rescaled and summed in blocks in f32 (jit-able). Scalar f32.
  """
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  w = jnp.ones_like(a) if mask is None else (mask > 0).astype(jnp.float32)
  n = _total(w)

  def unit(v):
    v = jnp.where(w > 0, v, 0.0)
    v = jnp.where(w > 0, v - _total(v) / n, 0.0)
    # r is scale-free: rescale to max |v| = 1 so that no sum of squares can
    # overflow f32 (ranks of a 3500-image RDM already gave ~(m^3/12)^2).
    peak = jnp.max(jnp.abs(v))
    return v / jnp.where(peak > 0, peak, 1)

  a, b = unit(a), unit(b)
  return _total(a * b) / (jnp.sqrt(_total(a * a)) * jnp.sqrt(_total(b * b)))


def _first_of_run(flags: jax.Array) -> jax.Array:
  """flags[i]: a new run starts at i -> index of the run's first element."""
  return lax.cummax(jnp.where(flags, jnp.arange(flags.shape[0]), 0))


def avg_ranks(v: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """1-based ranks with ties given their average rank (scipy rankdata).

  Entries with mask == 0 rank after every other one, so they leave the
  ranks of the others alone. v: [m]; returns [m] f32, exact for m < 2^23
  (`compare_rdms` ranks exactly at any size).
  """
  v = jnp.asarray(v, jnp.float32)
  if mask is not None:
    v = jnp.where(mask > 0, v, jnp.inf)
  m = v.shape[0]
  idx = jnp.arange(m)
  s, perm = lax.sort_key_val(v, idx)
  new = jnp.concatenate([jnp.array([True]), s[1:] != s[:-1]])
  first = _first_of_run(new)
  last = lax.cummin(
    jnp.where(jnp.concatenate([new[1:], jnp.array([True])]), idx, m - 1),
    reverse=True,
  )
  avg = (first + last).astype(jnp.float32) / 2 + 1
  return jnp.zeros(m, jnp.float32).at[perm].set(avg)


_ranks_jit = jax.jit(avg_ranks)


def _ranks(v: jax.Array) -> jax.Array:
  """Float32 average ranks where they are cheapest: on a CPU backend
  scipy's `rankdata` (numpy's sort; XLA's CPU sort is several times
  slower). Spearman itself ranks exactly (`_centred_ranks`)."""
  if jax.default_backend() == 'cpu' and not isinstance(v, jax.core.Tracer):
    from scipy import stats

    return jnp.asarray(stats.rankdata(np.asarray(v)).astype(np.float32))
  return _ranks_jit(v)


_pearson_jit = jax.jit(pearson)


def _int_partials(v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """int32 [m] -> block sums (lo, hi) that never overflow int32.

  v = hi * 2^12 + lo per entry (arithmetic shift: signed v too), for
  0 <= v < 2^31 or |v| < 2^30.
  """
  v = jnp.pad(v, (0, -v.shape[0] % 4096))
  lo = (v & 0xFFF).reshape(-1, 4096).sum(1)  # < 2^12 * 2^12
  hi = (v >> 12).reshape(-1, 4096).sum(1)  # < 2^19 * 2^12
  return lo, hi


def _host_sum(parts) -> int:
  lo, hi = (np.asarray(p, np.int64) for p in parts)
  return int(lo.sum() + (hi.sum() << 12))


# Centred doubled ranks c = 2 * rank - (m + 1) lie in (-m, m); the exact
# device sums split them into 14-bit limbs, which bounds m below 2^28.
_EXACT_DEVICE_MAX = 2**28


@jax.jit
def _centred_rank2(v: jax.Array) -> jax.Array:
  """[m] -> int32 2 * average rank - (m + 1): exact integers, sum 0."""
  m = v.shape[0]
  idx = jnp.arange(m, dtype=jnp.int32)
  s, perm = lax.sort_key_val(v, idx)
  new = jnp.concatenate([jnp.array([True]), s[1:] != s[:-1]])
  first = _first_of_run(new).astype(jnp.int32)
  last = lax.cummin(
    jnp.where(jnp.concatenate([new[1:], jnp.array([True])]), idx, m - 1),
    reverse=True,
  )
  # 2 * average rank = (first + 1) + (last + 1) for 0-based run ends.
  c = first + last + 2 - (m + 1)
  return jnp.zeros(m, jnp.int32).at[perm].set(c)


@jax.jit
def _exact_dot_parts(ca: jax.Array, cb: jax.Array):
  """Block partial sums of sum(ca * cb) in int32 limbs (no overflow).

  With c = h * 2^14 + l (0 <= l < 2^14, |h| <= 2^14 for |c| < 2^28),
  ca * cb = hh * 2^28 + (h_a l_b + l_a h_b) * 2^14 + l_a l_b, each term
  below 2^30 in magnitude; `_int_partials` sums those in blocks exactly.
  """
  ha, la = ca >> 14, ca & 0x3FFF
  hb, lb = cb >> 14, cb & 0x3FFF
  return (
    _int_partials(ha * hb),
    _int_partials(ha * lb + la * hb),
    _int_partials(la * lb),
  )


def _exact_dot(ca: jax.Array, cb: jax.Array) -> int:
  hh, mid, ll = (_host_sum(p) for p in _exact_dot_parts(ca, cb))
  return (hh << 28) + (mid << 14) + ll


def _host_ranking() -> bool:
  return jax.default_backend() == 'cpu'


def _centred_ranks(v: jax.Array):
  """2 * average rank - (m + 1) of v [m]: exact, in the form `_rank_corr`
  takes.

  On a CPU backend (numpy's sort; XLA's CPU sort is several times slower),
  or from 2^28 entries: float64 numpy from scipy's rankdata. Else int32 on
  the device.
  """
  m = v.shape[0]
  if _host_ranking() or m >= _EXACT_DEVICE_MAX:
    from scipy import stats

    r = stats.rankdata(np.asarray(v))  # float64 average ranks: exact
    return 2 * r - (m + 1)
  return _centred_rank2(v)


def _rank_corr(ca, cb) -> float:
  """Pearson of two centred rank vectors from `_centred_ranks`."""
  if isinstance(ca, np.ndarray) or isinstance(cb, np.ndarray):
    ca, cb = np.asarray(ca, np.float64), np.asarray(cb, np.float64)
    # Exact integers; products and sums in float64: ~1e-15 relative.
    num, da, db = (
      float(np.dot(x, y)) for x, y in ((ca, cb), (ca, ca), (cb, cb))
    )
  else:
    num, da, db = _exact_dot(ca, cb), _exact_dot(ca, ca), _exact_dot(cb, cb)
  if da == 0 or db == 0:
    return float('nan')  # a constant RDM, as scipy
  # Python ints of any size: one rounding each to float64.
  return float(np.clip(num / (np.sqrt(float(da)) * np.sqrt(float(db))), -1, 1))


def _tied_pairs(*sorted_keys: jax.Array) -> jax.Array:
  """Per element: earlier elements equal on every key (sum = tied pairs)."""
  m = sorted_keys[0].shape[0]
  new = jnp.zeros(m - 1, bool)
  for s in sorted_keys:
    new = new | (s[1:] != s[:-1])
  new = jnp.concatenate([jnp.array([True]), new])
  return (jnp.arange(m) - _first_of_run(new)).astype(jnp.int32)


def _inversions(b: jax.Array) -> jax.Array:
  """Per element: earlier elements strictly greater (bottom-up merge sort).

  At level l every pair of sorted halves of 2^(l+1) elements is merged by one
  sort on (block, value, half); a right-half element then has exactly
  (its old position - its new position) greater left-half elements before
  it. O(m log^2 m) work, O(m) memory, one compiled loop body.
  """
  m = b.shape[0]
  levels = max(1, int(np.ceil(np.log2(m))))
  b = jnp.pad(b, (0, 2**levels - m), constant_values=jnp.inf)
  pos = jnp.arange(2**levels, dtype=jnp.int32)

  def level(lev, carry):
    b, cnt = carry
    block, half = pos >> (lev + 1), (pos >> lev) & 1
    _, b, half, old, cnt = lax.sort((block, b, half, pos, cnt), num_keys=3)
    return b, cnt + jnp.where(half == 1, old - pos, 0)

  return lax.fori_loop(0, levels, level, (b, jnp.zeros_like(pos)))[1]


@jax.jit
def _kendall_parts(a, b):
  sa, sb = lax.sort((a, b), num_keys=2)  # by a, ties by b
  return (
    _int_partials(_inversions(sb)),  # discordant pairs
    _int_partials(_tied_pairs(sa)),  # tied in a
    _int_partials(_tied_pairs(jnp.sort(b))),  # tied in b
    _int_partials(_tied_pairs(sa, sb)),  # tied in both
  )


def _as_vector(r) -> jax.Array:
  r = jnp.asarray(r, jnp.float32)
  if r.ndim == 2 and r.shape[0] == r.shape[1]:
    return upper_triangle(r)
  if r.ndim != 1:
    raise InputError(f'RDM shape {r.shape}: pass [n, n] or condensed [m]')
  return r


def compare_rdms(a, b, method: str = 'spearman') -> float:
  """Similarity of two RDMs on their upper triangles (k=1).

  Args:
    a: [n, n] or condensed [n(n-1)/2] RDM.
    b: same shape as a.
    method: 'spearman' (Pearson of average ranks, as scipy spearmanr;
      exact integer ranks at any size, see the module docstring),
      'pearson', or 'kendall_tau_a' ((concordant - discordant) / (m choose 2)
      over the m entries, no tie correction, as rsatoolbox's tau-a; exact
      integer counts, O(m log^2 m) work and O(m) memory).

  Returns:
    The coefficient as a Python float.
  """
  if method not in COMPARE_METHODS:
    raise InputError(f'method {method!r} unknown: use {COMPARE_METHODS}')
  va, vb = _as_vector(a), _as_vector(b)
  if va.shape != vb.shape or va.shape[0] < 2:
    raise InputError(
      f'RDM sizes {va.shape} and {vb.shape}: pass two RDMs of the same images'
    )
  if method == 'pearson':
    return float(_pearson_jit(va, vb))
  if method == 'spearman':
    return _rank_corr(_centred_ranks(va), _centred_ranks(vb))
  dis, xtie, ytie, ntie = (_host_sum(p) for p in _kendall_parts(va, vb))
  m = va.shape[0]
  tot = m * (m - 1) // 2
  return float(np.clip((tot - xtie - ytie + ntie - 2 * dis) / tot, -1, 1))


def compare_many(
  a, others, methods: tuple[str, ...] = ('spearman', 'pearson')
) -> dict[str, dict[str, float]]:
  """`compare_rdms(a, b, m)` for every b of others and m of methods.

  a's upper triangle is taken and ranked once for all of them.

  Args:
    a: [n, n] or condensed RDM.
    others: name -> RDM of the same images.
    methods: of COMPARE_METHODS.

  Returns:
    name -> method -> coefficient.
  """
  bad = [m for m in methods if m not in COMPARE_METHODS]
  if bad:
    raise InputError(f'methods {bad} unknown: use {COMPARE_METHODS}')
  va = _as_vector(a)
  ra = _centred_ranks(va) if 'spearman' in methods else None
  out = {}
  for name, b in others.items():
    vb = _as_vector(b)
    if vb.shape != va.shape or va.shape[0] < 2:
      raise InputError(
        f'RDM sizes {va.shape} and {vb.shape} ({name}): pass RDMs of the '
        'same images'
      )
    out[name] = {}
    for m in methods:
      if m == 'spearman':
        out[name][m] = _rank_corr(ra, _centred_ranks(vb))
      else:
        out[name][m] = compare_rdms(va, vb, m)
  return out
