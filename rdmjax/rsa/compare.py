"""Comparing RDMs on their upper triangles: rank, linear and kernel measures.

`compare_rdms(a, b, method)` takes square [n, n] RDMs or their condensed
upper triangles (scipy `squareform` order); every method sees the same
float32 values (so the same ties). Spearman is exact at any size:
average ranks (ties as scipy's `rankdata`) are held as integers 2 * rank,
centred by m + 1 without rounding, and their products summed exactly in
integer limbs on the device (or, on a CPU backend, ranked by scipy and summed
in float64 on the host); float32 ranks would round above 2^24 entries (~5800
images). rsatoolbox's rho-a uses the same ranks. tau-a and tau-b count
concordant and discordant pairs and ties exactly with an O(m log^2 m) merge
sort. cosine and CKA are sums in float64 on the host, a chunk at a time
(float32 products are exact in float64); CKA of the double-centred RDMs
needs no n x n matrix (`_cka`).
`pearson` and `avg_ranks` (with an optional mask) are the jit-able Pearson
and ranking of the pair metrics (float32: for batches, below 2^23 entries).
`compare_rdms` is public as `rdmjax.rsa.rdm.compare_rdms`.
"""

from __future__ import annotations

import functools
import math

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


def _centred_ranks(v: jax.Array):
  """2 * average rank - (m + 1) of v [m]: exact, in the form `_rank_corr`
  takes.

  On a CPU backend (numpy's sort; XLA's CPU sort is several times slower),
  or from 2^28 entries: float64 numpy from scipy's rankdata. Else int32 on
  the device.
  """
  m = v.shape[0]
  if _host_ranking() or m >= _EXACT_DEVICE_MAX:
    r = stats.rankdata(np.asarray(v))  # float64 average ranks: exact
    return 2 * r - (m + 1)
  return _centred_rank2(v)


def _rank_dot(ca, cb) -> int | float:
  """sum(ca * cb) of two centred rank vectors from `_centred_ranks`: a
  Python int (device limbs, exact) or a float64 sum of exact integers."""
  if isinstance(ca, np.ndarray) or isinstance(cb, np.ndarray):
    ca, cb = np.asarray(ca, np.float64), np.asarray(cb, np.float64)
    # Exact integers; products and sums in float64: ~1e-15 relative.
    return float(np.dot(ca, cb))
  return _exact_dot(ca, cb)


def _rank_corr(ca, cb) -> float:
  """Pearson of two centred rank vectors from `_centred_ranks`."""
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


def _as_vector(r) -> jax.Array:
  if isinstance(r, (jax.Array, jax.core.Tracer)):
    r = r.astype(jnp.float32)
  else:  # cast on the host: no program compiled per shape
    r = jax.device_put(np.asarray(r, np.float32))
  if r.ndim == 2 and r.shape[0] == r.shape[1]:
    return upper_triangle(r)
  if r.ndim != 1:
    raise InputError(f'RDM shape {r.shape}: pass [n, n] or condensed [m]')
  return r


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


class _Rdm:
  """One RDM's upper triangle and what the methods derive from it, each
  computed once (`compare_many` shares the reference's)."""

  def __init__(self, r):
    self.v = _as_vector(r)

  @functools.cached_property
  def ranks(self):
    return _centred_ranks(self.v)

  @functools.cached_property
  def host(self) -> np.ndarray:
    return np.asarray(self.v)  # float32

  @functools.cached_property
  def n_images(self) -> int:
    return triangle_size(self.v.shape[0])

  @functools.cached_property
  def row_means(self) -> tuple[np.ndarray, float]:
    return _row_means(self.host, self.n_images)


def _compare(a: _Rdm, b: _Rdm, methods) -> dict[str, float]:
  """method -> coefficient; one Kendall count serves tau-a and tau-b."""
  out, counts = {}, None
  for method in methods:
    if method == 'pearson':
      out[method] = float(_pearson_jit(a.v, b.v))
    elif method == 'spearman':
      out[method] = _rank_corr(a.ranks, b.ranks)
    elif method == 'spearman_rho_a':
      out[method] = _rho_a(a.ranks, b.ranks)
    elif method in ('kendall_tau_a', 'kendall_tau_b'):
      counts = counts or _kendall_counts(a.v, b.v)
      out[method] = _tau(*counts, b=method == 'kendall_tau_b')
    elif method == 'cosine':
      out[method] = cosine_similarity(a.host, b.host)
    else:
      out[method] = _cka(a, b)
  return out


def _check_methods(methods) -> None:
  bad = [m for m in methods if m not in ALL_METHODS]
  if bad:
    raise InputError(f'methods {bad} unknown: use {ALL_METHODS}')


def compare_rdms(a, b, method: str = 'spearman') -> float:
  """Similarity of two RDMs on their upper triangles (k=1).

  Args:
    a: [n, n] or condensed [n(n-1)/2] RDM.
    b: same shape as a.
    method: one of ALL_METHODS:
      'spearman': Pearson of average ranks, as scipy spearmanr; exact integer
        ranks at any size (see the module docstring).
      'pearson': float32, centred and summed in blocks.
      'kendall_tau_a': (concordant - discordant) / (m choose 2) over the m
        entries, no tie correction, as rsatoolbox's `_tau_a`; exact integer
        counts, O(m log^2 m) work and O(m) memory.
      'spearman_rho_a': rsatoolbox's rho-a (`compare_rho_a`):
        12 sum((ra - mean)(rb - mean)) / (m^3 - m) of average ranks, i.e.
        Spearman's denominator without tie correction (not
        1 - 6 sum(d^2) / (m^3 - m), which differs under ties); equals
        'spearman' without ties. Exact ranks as 'spearman'.
      'kendall_tau_b': (con - dis) / sqrt((pairs - ties in a)
        (pairs - ties in b)), as scipy.stats.kendalltau (variant 'b', also
        rsatoolbox's 'tau-b'); the exact counts of 'kendall_tau_a'.
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
        matrix; condensed input must have n(n-1)/2 entries.

  Returns:
    The coefficient as a Python float (nan for a constant RDM where the
    measure is undefined, as scipy).
  """
  _check_methods([method])
  ra, rb = _Rdm(a), _Rdm(b)
  if ra.v.shape != rb.v.shape or ra.v.shape[0] < 2:
    raise InputError(
      f'RDM sizes {ra.v.shape} and {rb.v.shape}: pass two RDMs of the same '
      'images'
    )
  return _compare(ra, rb, [method])[method]


def compare_many(
  a, others, methods: tuple[str, ...] = ('spearman', 'pearson')
) -> dict[str, dict[str, float]]:
  """`compare_rdms(a, b, m)` for every b of others and m of methods.

  a's upper triangle is taken, ranked and centred once for all of them, and
  each b's once for all methods.

  Args:
    a: [n, n] or condensed RDM.
    others: name -> RDM of the same images.
    methods: of ALL_METHODS.

  Returns:
    name -> method -> coefficient.
  """
  _check_methods(methods)
  ra = _Rdm(a)
  out = {}
  for name, b in others.items():
    rb = _Rdm(b)
    if rb.v.shape != ra.v.shape or ra.v.shape[0] < 2:
      raise InputError(
        f'RDM sizes {ra.v.shape} and {rb.v.shape} ({name}): pass RDMs of the '
        'same images'
      )
    out[name] = _compare(ra, rb, methods)
  return out
