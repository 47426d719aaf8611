"""Comparing RDMs on their upper triangles: rank, linear and kernel measures.

`compare_rdms(a, b, method)` takes one RDM or several on either side (a
square [n, n] array or its condensed upper triangle in scipy `squareform`
order; a list or tuple of them; a stacked [k, n, n] or condensed [k, m]
array; a dict name -> RDM; an rsatoolbox `RDMs`) and gives a float for one
against one, else the [k_a, k_b] matrix. rsatoolbox's method names are
aliases (`METHOD_ALIASES`: 'corr', 'tau-a', 'tau-b', 'kendall', 'rho-a').

Values keep their precision: float64 input is ranked and summed in float64,
float32 input as float32 values (the same ties every method sees); other
inputs become float64 (integers) or float32 (half floats).

Missing pairs, rsatoolbox's way: NaN marks a pair that was not measured.
Two RDMs are compared on the pairs that both have, which must be the same
pairs (NaN at the same positions; else one line says so), or, with
`nan='drop_union'`, on the pairs both have wherever their NaN lie. Every
measure, Kendall's included, sees only those pairs; `cka`, which needs the
whole square, refuses missing pairs. inf is refused.

Exactness: Spearman and rho-a use average ranks (scipy's `rankdata`) held
as integers 2 * rank - (m + 1) and summed in float64 on the host, or, for a
large float32 RDM on an accelerator, ranked and summed exactly in integer
limbs on the device (float32 ranks would round above 2^24 entries). tau-a
and tau-b count concordant and discordant pairs and ties exactly (scipy's
merge sort on the host, an O(m log^2 m) merge sort on the device). Pearson,
cosine and CKA sum in float64 on the host, a chunk at a time (float32
values are exact in float64); CKA of the double-centred RDMs needs no n x n
matrix (`_cka`). Several RDMs against several share one pass over the
entries (a chunked float64 product of the centred vectors), each RDM ranked
once.

`pearson` and `avg_ranks` (with an optional mask) are the jit-able Pearson
and ranking of the pair metrics (float32: for batches, below 2^23 entries).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from scipy import stats

from rdmjax.errors import InputError

# Methods on any two [m] vectors.
COMPARE_METHODS = (
  'spearman',
  'pearson',
  'kendall_tau_a',
  'spearman_rho_a',
  'kendall_tau_b',
  'cosine',
)
# Methods that need the square RDM: a condensed input must have n(n-1)/2
# entries for some n.
SQUARE_METHODS = ('cka',)
ALL_METHODS = COMPARE_METHODS + SQUARE_METHODS


@jax.jit
def _upper(r: jax.Array) -> jax.Array:
  n = r.shape[0]
  i = lax.broadcasted_iota(jnp.int32, (n, n), 0)
  upper = i < lax.broadcasted_iota(jnp.int32, (n, n), 1)
  # Positions from an iota mask on the device: no host index arrays.
  return r.ravel()[jnp.flatnonzero(upper.ravel(), size=n * (n - 1) // 2)]


def _square(r) -> jax.Array:
  """r as a checked [n, n] array; a host array put on the device
  (`jnp.asarray` would compile a program per shape)."""
  if not isinstance(r, (jax.Array, jax.core.Tracer)):
    r = jax.device_put(np.asarray(r))
  if r.ndim != 2 or r.shape[0] != r.shape[1]:
    raise InputError(f'RDM shape {r.shape}: pass a square [n, n] matrix')
  return r


def upper_triangle(r) -> jax.Array:
  """r: [n, n] -> [n(n-1)/2], the entries i < j in scipy squareform order."""
  return _upper(_square(r))


@jax.jit
def _upper_mean(r: jax.Array) -> jax.Array:
  return jnp.mean(_upper(r))


def upper_mean(r) -> float:
  """The mean of the entries i < j of r [n, n]: float32 sums, the value of
  `jnp.mean(upper_triangle(r))` in one program instead of two."""
  return float(_upper_mean(_square(r)))


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


def _rank_dot(ca, cb) -> int | float:
  """sum(ca * cb) of two centred rank vectors (`_centred_rank2` or host ranks): a
  Python int (device limbs, exact) or a float64 sum of exact integers."""
  if isinstance(ca, np.ndarray) or isinstance(cb, np.ndarray):
    ca, cb = np.asarray(ca, np.float64), np.asarray(cb, np.float64)
    # Exact integers; products and sums in float64: ~1e-15 relative.
    return float(np.dot(ca, cb))
  return _exact_dot(ca, cb)


def _rank_corr(ca, cb) -> float:
  """Pearson of two centred rank vectors (`_centred_rank2` or host ranks)."""
  num, da, db = _rank_dot(ca, cb), _rank_dot(ca, ca), _rank_dot(cb, cb)
  if da == 0 or db == 0:
    return float('nan')  # a constant RDM, as scipy
  # Python ints of any size: one rounding each to float64.
  return float(np.clip(num / (np.sqrt(float(da)) * np.sqrt(float(db))), -1, 1))


def _rho_a(ca, cb) -> float:
  """rsatoolbox's rho-a from centred doubled ranks c = 2 (rank - mean).

  12 sum((ra - mean)(rb - mean)) / (m^3 - m) = 3 sum(ca cb) / (m^3 - m): the
  expected Spearman under random tie breaking; Spearman without ties.
  """
  m = ca.shape[0]
  # An int numerator: Python's int / int rounds once.
  return float(np.clip(3 * _rank_dot(ca, cb) / (m**3 - m), -1, 1))


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


def _kendall_counts(va: jax.Array, vb: jax.Array) -> tuple[int, ...]:
  """Exact (pairs, discordant, tied in a, tied in b, tied in both)."""
  dis, xtie, ytie, ntie = (_host_sum(p) for p in _kendall_parts(va, vb))
  m = va.shape[0]
  return m * (m - 1) // 2, dis, xtie, ytie, ntie


def _tau(tot: int, dis: int, xtie: int, ytie: int, ntie: int, b: bool):
  # tot = con + dis + xtie + ytie - ntie (scipy's kendalltau).
  con_minus_dis = tot - xtie - ytie + ntie - 2 * dis
  if not b:
    return float(np.clip(con_minus_dis / tot, -1, 1))
  if xtie == tot or ytie == tot:
    return float('nan')  # a constant RDM, as scipy
  # scipy's order of operations, from exact integers.
  tau = con_minus_dis / math.sqrt(tot - xtie) / math.sqrt(tot - ytie)
  return float(np.clip(tau, -1, 1))


# Entries per host chunk of cosine and CKA (float64 temporaries of 32 MiB).
_CHUNK = 1 << 22


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
  """Cosine of two [m] vectors, summed in float64 by chunks.

  As rsatoolbox's `_cosine`: 0 where either vector is all zeros (the one
  cosine of rdmjax: `compare_rdms` and `rdmjax.rsa.group` use it).
  """
  ab = aa = bb = 0.0
  for s in range(0, a.shape[0], _CHUNK):
    x = a[s : s + _CHUNK].astype(np.float64)
    y = b[s : s + _CHUNK].astype(np.float64)
    ab, aa, bb = ab + x @ y, aa + x @ x, bb + y @ y
  if aa == 0 or bb == 0:
    return 0.0
  return float(np.clip(ab / (np.sqrt(aa) * np.sqrt(bb)), -1, 1))


def triangle_size(m: int) -> int:
  """n with n(n-1)/2 = m: the images of a condensed RDM of m entries, or an
  InputError (the one check of rdmjax.rsa)."""
  n = (1 + math.isqrt(1 + 8 * m)) // 2
  if m < 1 or n * (n - 1) // 2 != m:
    raise InputError(
      f'{m} entries are no upper triangle n(n-1)/2 of n >= 2 images: pass'
      ' a square [n, n] RDM or its condensed upper triangle'
    )
  return n


def _row_chunks(n: int):
  """Yields (lo, hi, i, j): condensed entries [lo, hi) of whole rows of an
  n x n RDM, with their rows i and columns j (i < j), ~_CHUNK at a time."""
  rows = np.arange(n + 1, dtype=np.int64)
  starts = rows * n - rows * (rows + 1) // 2  # starts[n] = m
  cuts = np.unique(
    np.r_[0, np.searchsorted(starts, np.arange(_CHUNK, starts[-1], _CHUNK)), n]
  )
  for r0, r1 in zip(cuts[:-1], cuts[1:]):
    lens = n - 1 - rows[r0:r1]
    i = np.repeat(rows[r0:r1], lens)
    j = np.arange(starts[r0], starts[r1]) - np.repeat(starts[r0:r1], lens)
    yield starts[r0], starts[r1], i, j + i + 1


def _row_means(v: np.ndarray, n: int) -> tuple[np.ndarray, float]:
  """Row means [n] and grand mean of the square RDM of condensed v (zero
  diagonal), in float64."""
  s = np.zeros(n)
  for lo, hi, i, j in _row_chunks(n):
    x = v[lo:hi].astype(np.float64)
    s += np.bincount(i, x, n) + np.bincount(j, x, n)
  r = s / n
  return r, float(r.mean())


def _cka(a: _Rdm, b: _Rdm) -> float:
  """<G_a, G_b>_F / (|G_a|_F |G_b|_F) with G = -1/2 H D H, H = I - 11^T/n.

  (H D H)_ij = D_ij - r_i - r_j + g (row means r, grand mean g): summed over
  i < j from the condensed vectors a chunk of rows at a time (twice, by
  symmetry) plus the diagonal, -2 r_i + g. The -1/2 cancels. O(m) work,
  O(n + _CHUNK) memory.
  """
  (ra, ga), (rb, gb) = a.row_means, b.row_means
  ab = aa = bb = 0.0
  for lo, hi, i, j in _row_chunks(a.n_images):
    x = a.host[lo:hi] - ra[i] - ra[j] + ga
    y = b.host[lo:hi] - rb[i] - rb[j] + gb
    ab, aa, bb = ab + x @ y, aa + x @ x, bb + y @ y
  da, db = ga - 2 * ra, gb - 2 * rb
  ab, aa, bb = 2 * ab + da @ db, 2 * aa + da @ da, 2 * bb + db @ db
  if aa == 0 or bb == 0:
    return float('nan')  # an all-zero RDM
  return float(np.clip(ab / (np.sqrt(aa) * np.sqrt(bb)), -1, 1))


# rsatoolbox's names (and a few spellings of them) for rdmjax's methods.
METHOD_ALIASES = {
  'corr': 'pearson',
  'rho-a': 'spearman_rho_a',
  'rho_a': 'spearman_rho_a',
  'tau-a': 'kendall_tau_a',
  'tau_a': 'kendall_tau_a',
  'tau-b': 'kendall_tau_b',
  'tau_b': 'kendall_tau_b',
  'kendall': 'kendall_tau_b',
  'linear_cka': 'cka',
}
# How two RDMs with missing (NaN) pairs are compared.
NAN_POLICIES = ('same', 'drop_union')
# Methods that are one product of per-RDM vectors: several RDMs against
# several share one chunked pass.
_GRAM_METHODS = ('spearman', 'spearman_rho_a', 'pearson', 'cosine')
# Below this many entries every method runs on the host, also where an
# accelerator is the default device: a compile costs more than the work.
_DEVICE_MIN = 1 << 20


def method_name(method: str) -> str:
  """The rdmjax name of a comparison method given by its name or an alias
  (`METHOD_ALIASES`, rsatoolbox's names), or a one-line InputError."""
  if isinstance(method, str):
    if method in ALL_METHODS:
      return method
    if method in METHOD_ALIASES:
      return METHOD_ALIASES[method]
  raise InputError(
    f'comparison method {method!r} unknown: use one of {ALL_METHODS} or an '
    f'alias {tuple(METHOD_ALIASES)}'
  )


def _check_nan(nan: str) -> None:
  if nan not in NAN_POLICIES:
    raise InputError(f'nan={nan!r} unknown: use one of {NAN_POLICIES}')


def _host_dtype(dtype) -> type:
  """float64 stays float64 (ranked in float64); floats below it are float32
  values; integers and booleans are exact in float64."""
  dtype = np.dtype(dtype)
  if dtype == np.float64:
    return np.float64
  if dtype.kind in 'biu':
    return np.float64
  if dtype.kind == 'f' or dtype.name == 'bfloat16':
    return np.float32
  raise InputError(f'RDM dtype {dtype}: pass real dissimilarities')


def _condense(sq: np.ndarray) -> np.ndarray:
  """[n, n] -> its entries i < j in squareform order, a row at a time (no
  n x n index arrays)."""
  n = sq.shape[0]
  out = np.empty(n * (n - 1) // 2, sq.dtype)
  pos = 0
  for i in range(n - 1):
    out[pos : pos + n - 1 - i] = sq[i, i + 1 :]
    pos += n - 1 - i
  return out


def _device_path(m: int) -> bool:
  return not _host_ranking() and _DEVICE_MIN <= m < _EXACT_DEVICE_MAX


@jax.jit
def _nonfinite(v: jax.Array) -> jax.Array:
  return jnp.sum(~jnp.isfinite(v))


def centred_ranks2(v: np.ndarray) -> np.ndarray:
  """2 * average rank - (m + 1) of v [m] on the host: exact integers (int32
  below 2^30 entries, else int64), scipy's `rankdata` ties. One unstable
  numpy sort (several times faster than rankdata's merge sort): a tie
  run's average rank does not depend on the order within it."""
  m = v.shape[0]
  o = np.argsort(v)
  s = v[o]
  new = np.empty(m, bool)
  new[:1] = True
  np.not_equal(s[1:], s[:-1], out=new[1:])
  starts = np.flatnonzero(new)
  ends = np.append(starts[1:], m)  # exclusive
  dtype = np.int32 if m < 2**30 else np.int64
  # 0-based run [start, end): 2 * average rank = start + end + 1.
  run = (starts + ends + 1 - (m + 1)).astype(dtype)
  c = np.empty(m, dtype)
  c[o] = np.repeat(run, ends - starts)
  return c


def average_ranks(v: np.ndarray) -> np.ndarray:
  """scipy's `rankdata(v)` (average ties) as float64, by `centred_ranks2`."""
  return (centred_ranks2(v) + (v.shape[0] + 1)) / 2


def centred_norm2(v: np.ndarray) -> float:
  """|H D H|_F^2 of the square RDM D of condensed v (float64, zero
  diagonal, H = I - 11^T / n): CKA's normaliser, O(m) work."""
  v = np.asarray(v, np.float64)
  n = triangle_size(v.shape[0])
  r, g = _row_means(v, n)
  total = 0.0
  for lo, hi, i, j in _row_chunks(n):
    x = v[lo:hi] - r[i] - r[j] + g
    total += x @ x
  d = g - 2 * r
  return float(2 * total + d @ d)


class _Rdm:
  """One RDM's measured pairs (its upper triangle without NaN) and what the
  methods derive from them, each computed once.

  A host RDM holds `host` (float32 or float64); a large float32 RDM where
  an accelerator is the default device (`_device_path`) holds `dev` on the
  device and brings `host` over only when a host method asks.
  """

  def __init__(self, r, label: str):
    self.label = label
    self.dev = None
    self.missing = None  # bool [m] of the NaN pairs, or None
    if isinstance(r, jax.core.Tracer):
      raise InputError(
        f'RDM {label} is traced: compare_rdms runs outside jit (use '
        'rdmjax.rsa.compare.pearson or avg_ranks inside)'
      )
    shape = np.shape(r)
    square = len(shape) == 2 and shape[0] == shape[1]
    if len(shape) != 1 and not square:
      raise InputError(
        f'RDM {label}: shape {shape}; pass a square [n, n] RDM or its '
        'condensed upper triangle [n(n-1)/2]'
      )
    m = shape[0] * (shape[0] - 1) // 2 if square else shape[0]
    dtype = _host_dtype(r.dtype if hasattr(r, 'dtype') else np.asarray(r).dtype)
    if dtype == np.float32 and _device_path(m):
      v = r.astype(jnp.float32) if isinstance(r, jax.Array) else None
      if v is None:
        v = jax.device_put(np.asarray(r, np.float32))
      v = _upper(v) if square else v
      if int(_nonfinite(v)) == 0:
        self.dev, self.size = v, m
        return
      r = np.asarray(v)  # missing pairs: the host path
      square = False
    v = np.asarray(r, dtype)
    v = _condense(v) if square else v
    self.size = v.shape[0]
    bad = ~np.isfinite(v)
    if bad.any():
      inf = int(np.isinf(v).sum())
      if inf:
        raise InputError(
          f'RDM {label} holds inf at {inf} pairs: pass finite '
          'dissimilarities (NaN marks a pair not measured)'
        )
      self.missing = bad
      v = v[~bad]
    self.host = v

  @functools.cached_property
  def host(self) -> np.ndarray:  # the device RDM's, on request
    return np.asarray(self.dev)

  @property
  def m(self) -> int:
    """The measured pairs."""
    return self.size if self.missing is None else self.host.shape[0]

  @functools.cached_property
  def key(self) -> tuple:
    """Equal for RDMs missing the same pairs."""
    if self.missing is None:
      return (self.size, None)
    return (self.size, hashlib.sha1(np.packbits(self.missing)).hexdigest())

  def restricted(self, drop: np.ndarray) -> _Rdm:
    """This RDM on the pairs where drop (bool [size]) is False."""
    full = np.full(self.size, np.nan, self.host.dtype)
    full[self._kept()] = self.host
    full[drop] = np.nan
    return _Rdm(full, self.label)

  def _kept(self) -> np.ndarray:
    return np.ones(self.size, bool) if self.missing is None else ~self.missing

  def values(self) -> np.ndarray:
    """The upper triangle [size] with NaN at the missing pairs."""
    if self.missing is None:
      return self.host
    full = np.full(self.size, np.nan, self.host.dtype)
    full[~self.missing] = self.host
    return full

  @functools.cached_property
  def ranks(self) -> np.ndarray:
    """2 * average rank - (m + 1) of the measured pairs: exact integers."""
    return centred_ranks2(self.host)

  @functools.cached_property
  def dev_ranks(self) -> jax.Array:
    return _centred_rank2(self.dev)

  @functools.cached_property
  def mean(self) -> float:
    return float(np.mean(self.host, dtype=np.float64))

  def chunk(self, method: str, lo: int, hi: int) -> np.ndarray:
    """float64 entries [lo, hi) of the vector `method` takes a product of."""
    if method in ('spearman', 'spearman_rho_a'):
      return self.ranks[lo:hi].astype(np.float64)
    x = self.host[lo:hi].astype(np.float64)
    return x - self.mean if method == 'pearson' else x

  def norm2(self, method: str) -> float:
    """sum(x * x) of the vector `method` takes, once per method."""
    norms = self.__dict__.setdefault('_norms', {})
    if method not in norms:
      total = 0.0
      for s in range(0, self.m, _CHUNK):
        x = self.chunk(method, s, s + _CHUNK)
        total += float(x @ x)
      norms[method] = total
    return norms[method]

  @functools.cached_property
  def n_images(self) -> int:
    return triangle_size(self.size)

  @functools.cached_property
  def row_means(self) -> tuple[np.ndarray, float]:
    return _row_means(self.host, self.n_images)

  @functools.cached_property
  def ties(self) -> int:
    """Pairs of measured entries with equal values."""
    s = np.sort(self.host)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1], True])
    t = np.diff(starts).astype(np.int64)
    return int((t * (t - 1) // 2).sum())


class RdmSet(NamedTuple):
  """RDMs as `compare_rdms` reads one side: names (dict keys, rsatoolbox's
  'name' descriptor, or 0..k-1), the RDMs, and whether one was given."""

  names: list
  rdms: list[_Rdm]
  single: bool


def rdm_items(x, what: str = 'a') -> tuple[list, bool, bool]:
  """The forms one side of a comparison takes, unpacked: (items [(name,
  RDM)], whether one RDM was given, whether the names were given: a dict's
  keys or rsatoolbox's 'name' descriptor; else 0..k-1). A square 2-D array
  is one RDM, a list of numbers one condensed RDM. The RDMs are not checked
  here (`rdm_set` does; `rdmjax.rsa.interop` in its own words)."""
  if isinstance(x, jax.Array) and _host_ranking():
    x = np.asarray(x)  # a CPU array: a view, no copy
  if hasattr(x, 'get_vectors') and hasattr(x, 'n_rdm'):  # rsatoolbox RDMs
    vectors = np.asarray(x.get_vectors())
    desc = getattr(x, 'rdm_descriptors', {}) or {}
    names = list(desc.get('name', range(len(vectors))))
    named = 'name' in desc
    if len(names) != len(vectors) or len(set(map(str, names))) != len(names):
      names, named = list(range(len(vectors))), False
    return list(zip(names, vectors)), False, named
  if isinstance(x, Mapping):
    return list(x.items()), False, True
  if isinstance(x, (list, tuple)) and not (
    x and all(np.ndim(e) == 0 for e in x)
  ):
    return list(enumerate(x)), False, False
  shape = np.shape(x)  # an array, or a list of numbers
  if len(shape) == 1 or (len(shape) == 2 and shape[0] == shape[1]):
    return [(0, x)], True, False
  if len(shape) in (2, 3) and (len(shape) == 2 or shape[1] == shape[2]):
    return list(enumerate(x)), False, False
  raise InputError(
    f'RDMs {what}: shape {shape}; pass one RDM ([n, n] or condensed '
    '[m]), a stack [k, n, n] or [k, m], a list or a dict of them'
  )


def rdm_set(x, what: str = 'a') -> RdmSet:
  """One RDM or several, as `compare_rdms` takes them (`rdm_items`),
  checked: all of one size; a one-line InputError naming what is
  malformed."""
  items, single, _ = rdm_items(x, what)
  if not items:
    raise InputError(f'RDMs {what}: none given; pass at least one RDM')
  rdms = [_Rdm(r, what if single else f'{what}[{name!r}]') for name, r in items]
  sizes = {r.size for r in rdms}
  if len(sizes) != 1:
    got = ', '.join(f'{r.label} {r.size}' for r in rdms[:4])
    raise InputError(
      f'RDMs {what} differ in size ({got}{", ..." if len(rdms) > 4 else ""}'
      ' pairs): pass RDMs of the same images'
    )
  return RdmSet([name for name, _ in items], rdms, single)


def _aligned(x: _Rdm, y: _Rdm, nan: str) -> tuple[_Rdm, _Rdm]:
  """x and y on the pairs both measured, or an InputError if those differ
  and nan is 'same'."""
  if x.size != y.size:
    raise InputError(
      f'RDM sizes differ: {x.label} has {x.size} pairs, {y.label} {y.size}:'
      ' pass RDMs of the same images'
    )
  if x.key == y.key:
    return x, y
  mx = np.zeros(x.size, bool) if x.missing is None else x.missing
  my = np.zeros(y.size, bool) if y.missing is None else y.missing
  if nan == 'same':
    raise InputError(
      f'RDMs {x.label} and {y.label} miss different pairs ({int(mx.sum())} '
      f'and {int(my.sum())} NaN, at {int((mx != my).sum())} differing '
      "positions): pass RDMs with NaN at the same pairs, or nan='drop_union'"
      ' to compare each two on the pairs both have'
    )
  union = mx | my
  return x.restricted(union), y.restricted(union)


def _few(m: int, x: _Rdm, y: _Rdm) -> None:
  if m < 2:
    raise InputError(
      f'RDMs {x.label} and {y.label} share {m} measured pair(s): compare '
      'RDMs on at least 2'
    )


def _gram_block(xs: list[_Rdm], ys: list[_Rdm], method: str) -> np.ndarray:
  """method between every x and y (all missing the same pairs): one chunked
  float64 product [len(xs), len(ys)]."""
  m = xs[0].m
  _few(m, xs[0], ys[0])
  dots = np.zeros((len(xs), len(ys)))
  for s in range(0, m, _CHUNK):
    a = np.stack([x.chunk(method, s, s + _CHUNK) for x in xs])
    b = np.stack([y.chunk(method, s, s + _CHUNK) for y in ys])
    dots += a @ b.T
  if method == 'spearman_rho_a':
    # 12 sum((ra - mean)(rb - mean)) / (m^3 - m) = 3 sum(ca cb) / (m^3 - m).
    return np.clip(3 * dots / (m**3 - m), -1, 1)
  na = np.sqrt([x.norm2(method) for x in xs])[:, None]
  nb = np.sqrt([y.norm2(method) for y in ys])[None, :]
  with np.errstate(divide='ignore', invalid='ignore'):
    r = dots / (na * nb)
  # A constant RDM: no correlation (NaN, as scipy); an all-zero one has
  # cosine 0 (as rsatoolbox).
  r[(na == 0) | (nb == 0)] = 0.0 if method == 'cosine' else np.nan
  return np.clip(r, -1, 1)


def _kendall_host(x: _Rdm, y: _Rdm, b: bool) -> float:
  """scipy's tau-b, and tau-a from it with the exact tie counts."""
  m = x.m
  tot = m * (m - 1) // 2
  xtie, ytie = x.ties, y.ties
  if xtie == tot or ytie == tot:  # a constant RDM: tau-b undefined
    return float('nan') if b else 0.0
  with np.errstate(all='ignore'):
    tau_b = float(stats.kendalltau(x.host, y.host).statistic)
  if b:
    return float(np.clip(tau_b, -1, 1))
  # con - dis is an integer: recovered exactly below 2^50 pairs.
  con_dis = round(tau_b * math.sqrt(tot - xtie) * math.sqrt(tot - ytie))
  return float(np.clip(con_dis / tot, -1, 1))


def _pair(x: _Rdm, y: _Rdm, method: str) -> float:
  """method between two RDMs on the same measured pairs."""
  _few(x.m, x, y)
  if method == 'cka':
    for r in (x, y):
      if r.missing is not None:
        raise InputError(
          f'RDM {r.label} misses {int(r.missing.sum())} pairs: cka needs '
          'every pair of the square RDM; use another method or fill them'
        )
    return _cka(x, y)
  device = x.dev is not None and y.dev is not None
  if method in ('kendall_tau_a', 'kendall_tau_b'):
    if device:
      return _tau(*_kendall_counts(x.dev, y.dev), b=method == 'kendall_tau_b')
    return _kendall_host(x, y, method == 'kendall_tau_b')
  if device and method == 'spearman':
    return _rank_corr(x.dev_ranks, y.dev_ranks)
  if device and method == 'spearman_rho_a':
    return _rho_a(x.dev_ranks, y.dev_ranks)
  if device and method == 'pearson':
    return float(_pearson_jit(x.dev, y.dev))
  return float(_gram_block([x], [y], method)[0, 0])


def _compare_sets(xs, ys, method: str, nan: str) -> np.ndarray:
  """[len(xs), len(ys)] float64 of method between every x and y."""
  out = np.full((len(xs), len(ys)), np.nan)
  host = all(r.dev is None for r in (*xs, *ys))
  if method in _GRAM_METHODS and host:
    # One product per pair of groups that miss the same pairs.
    keys_a = {r.key for r in xs}
    keys_b = {r.key for r in ys}
    for ka in keys_a:
      ia = [k for k, r in enumerate(xs) if r.key == ka]
      for kb in keys_b:
        ib = [k for k, r in enumerate(ys) if r.key == kb]
        if ka == kb:
          block = _gram_block([xs[k] for k in ia], [ys[k] for k in ib], method)
          out[np.ix_(ia, ib)] = block
        else:
          for i in ia:
            for j in ib:
              out[i, j] = _pair(*_aligned(xs[i], ys[j], nan), method)
    return out
  for i, x in enumerate(xs):
    for j, y in enumerate(ys):
      out[i, j] = _pair(*_aligned(x, y, nan), method)
  return out


def compare_rdms(a, b, method: str = 'spearman', *, nan: str = 'same'):
  """Similarity of RDMs on their upper triangles (k=1).

  Args:
    a: one RDM ([n, n] or condensed [n(n-1)/2]) or several: a list or tuple
      of them, a stacked [k, n, n] or condensed [k, m] array (a square 2-D
      array is one RDM: pass a list for a stack of m condensed RDMs of m
      entries), a dict name -> RDM, or an rsatoolbox `RDMs`. NaN marks a
      pair not measured.
    b: the same, over the same images.
    method: one of ALL_METHODS or its alias (`METHOD_ALIASES`):
      'spearman': Pearson of average ranks, as scipy spearmanr; exact ranks
        at any size (see the module docstring).
      'pearson' ('corr'): Pearson r, float64 sums.
      'kendall_tau_a' ('tau-a'): (concordant - discordant) / (m choose 2)
        over the m measured pairs, no tie correction, as rsatoolbox's
        `_tau_a`; exact counts.
      'spearman_rho_a' ('rho-a'): rsatoolbox's rho-a (`compare_rho_a`):
        12 sum((ra - mean)(rb - mean)) / (m^3 - m) of average ranks, i.e.
        Spearman's denominator without tie correction (not
        1 - 6 sum(d^2) / (m^3 - m), which differs under ties); equals
        'spearman' without ties.
      'kendall_tau_b' ('tau-b', 'kendall'): (con - dis) /
        sqrt((pairs - ties in a) (pairs - ties in b)), as
        scipy.stats.kendalltau (variant 'b').
      'cosine': a.b / (|a| |b|) of the upper triangles, as rsatoolbox's
        'cosine' (0 for an all-zero RDM); float64 sums.
      'cka': centred kernel alignment of the double-centred RDMs,
        <G_a, G_b>_F / (|G_a|_F |G_b|_F) with G = -1/2 H D H and
        H = I - 11^T / n over the full square (zero diagonal). For squared
        Euclidean RDMs (also correlation and cosine distances, which are
        squared Euclidean distances of normalised patterns, up to a
        factor) G is the Gram matrix of the centred patterns, so this is
        linear CKA, |Y^T X|_F^2 / (|X^T X|_F |Y^T Y|_F); square a
        'euclidean' RDM first for that. Float64, O(m) work, no n x n
        matrix; needs every pair.
    nan: missing pairs. 'same' (default, rsatoolbox's rule): two RDMs must
      miss the same pairs, which are left out; else an InputError says so.
      'drop_union': each two RDMs are compared on the pairs both measured.

  Returns:
    For one RDM against one, the coefficient as a Python float (nan for a
    constant RDM where the measure is undefined, as scipy). Else a
    [k_a, k_b] float64 array, rows in a's order (a dict's keys), columns in
    b's; `compare_many` gives the same by name.
  """
  method = method_name(method)
  _check_nan(nan)
  sa, sb = rdm_set(a, 'a'), rdm_set(b, 'b')
  out = _compare_sets(sa.rdms, sb.rdms, method, nan)
  return float(out[0, 0]) if sa.single and sb.single else out


def compare_many(
  a,
  others,
  methods: tuple[str, ...] = ('spearman', 'pearson'),
  *,
  nan: str = 'same',
) -> dict:
  """`compare_rdms(a, b, m)` for every b of others and m of methods.

  a is ranked and centred once for all of them, and each b once for all
  methods.

  Args:
    a: one RDM ([n, n] or condensed).
    others: RDMs of the same images as `compare_rdms` takes them (a dict
      name -> RDM, a list, a stack, an rsatoolbox `RDMs`).
    methods: names of ALL_METHODS or their aliases (the result uses the
      names as given).
    nan: as `compare_rdms`.

  Returns:
    name -> method -> coefficient (names: the dict's keys, else 0..k-1).
  """
  _check_nan(nan)
  canonical = {m: method_name(m) for m in methods}
  sa = rdm_set(a, 'a')
  if not sa.single:
    raise InputError(
      f'compare_many takes one RDM a, got {len(sa.rdms)}: use compare_rdms '
      'for several against several'
    )
  sb = rdm_set(others, 'others')
  out = {name: {} for name in sb.names}
  for given, method in canonical.items():
    row = _compare_sets(sa.rdms, sb.rdms, method, nan)[0]
    for name, value in zip(sb.names, row):
      out[name][given] = float(value)
  return out
