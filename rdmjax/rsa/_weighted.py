"""Pair statistics with integer pair weights: one bootstrap draw each.

A draw over images (`rdmjax.rsa.inference`) weights the scored pair (i, j)
by c_i * c_j, c the times each image is drawn: `weighted_pair_stats` gives
the statistics of that expanded multiset (pair k repeated w_k times, pairs
of weight 0 left out) without expanding it. `run_draws(..., stats=...)`
computes those of `ALL_PAIR_STATS` it is asked for (default `PAIR_STATS`):

- 'spearman': Pearson of the average ranks of the expanded multiset. A tie
  group spanning cumulative weights (S, E] ranks (S + E + 1) / 2; the
  values are sorted once, so a draw is a cumulative sum of the sorted
  weights and gathers, never a sort. R = 2 rank - (W + 1) = S + E - W is
  an exact int32, centred by the weighted mean without rounding, and stays
  exact in float32, scaled by a power of two (W < 2^24).
- 'rho_a': rsatoolbox's rho-a, 12 sum w (r_t - m)(r_p - m) / (W^3 - W)
  (average ranks r, m = (W + 1) / 2, W the total weight): the Spearman
  numerator, no tie correction; NaN for W < 2.
- 'pearson': weighted, centred twice (float64 on the host, then per draw).
- 'r2': 1 - SS_res / SS_tot around the weighted target mean, as
  `rdmjax.training.metrics.r2` (a constant target gives 1 for a perfect
  prediction, else 0).
- 'cosine': sum w a b / sqrt(sum w a^2 sum w b^2) of the raw values,
  rsatoolbox's 'cosine' (0 when either is all zeros in the draw).

A draw with no pair (W = 0) is NaN in every statistic.

Draws run on the device in float32 (`lax.map` over chunks of draws), every
sum over pairs `_sum` (three pairwise halvings, then a compensated TwoSum
reduce: its error does not depend on the order XLA picks for a reduce).

Accuracy, per draw and for the original images (all-ones counts), against
float64 statistics of the expanded multiset (np.repeat, scipy):

- Exact: weights, cumulative weights, ranks (also as float32, W < 2^24).
- A term of a sum takes at most four float32 roundings (u = 2^-24), and
  `_sum` adds at most 4u of the sum of its terms' magnitudes, which
  Cauchy-Schwarz bounds by the statistic's normalizer: a sum that cancels
  (centred ranks of a categorical model RDM, two tie groups of opposite
  sign) costs nothing more. A plain float32 reduce instead loses up to
  ~P u of it, in an order XLA picks per machine (before this reduce:
  Spearman 3e-6 to 7e-6 off, a target and a prediction of 150 images with
  a few large tie groups each).
- First-order worst case, every rounding erring the same way: 14u
  (8.3e-7) for 'spearman' and 10u for 'rho_a' (W < 2^24: bootstrap draws
  of up to ~5800 images); about 19u for 'pearson' and 'cosine', 32u *
  max(1, |R^2|) for 'r2'. The roundings of separate pairs differ in sign:
  the errors measured are at most 3e-7 (R^2: times max(1, |R^2|)).
- Asserted by tests/unit/rsa/weighted_test.py for every row: 1e-6 (R^2:
  1e-6 * max(1, |R^2|)) on categorical model RDMs of 2, 3 and 8
  categories against continuous targets, targets with a few large tie
  groups, a continuous RDM, 20 to 1000 images. Measured on a CPU; a GPU
  runs the same float32 program.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rdmjax.errors import InputError
from rdmjax.rsa.rows import width_bucket

PAIR_STATS = ('spearman', 'pearson', 'r2')  # run_draws' default
ALL_PAIR_STATS = (*PAIR_STATS, 'rho_a', 'cosine')
_RANKED = ('spearman', 'rho_a')  # the statistics of the ranks
_B1, _B2 = 32, 128  # cumulative-sum blocks: _B1 * _B2 pairs per outer block
_PAIRWISE_LEVELS = 3  # plain halvings before the compensated reduce
_CHUNK = 32  # draws per compiled call


def _run_bounds(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """v [P] -> (order, lo, hi): the sorting order and, per entry in v's
  order, its tie run's sorted positions [lo, hi) (int32)."""
  o = np.argsort(v, kind='stable')
  s = v[o]
  new = np.r_[True, s[1:] != s[:-1]]
  starts = np.flatnonzero(new)
  ends = np.r_[starts[1:], len(s)]
  run = np.cumsum(new) - 1
  lo, hi = np.empty(len(v), np.int32), np.empty(len(v), np.int32)
  lo[o], hi[o] = starts[run], ends[run]
  return o, lo, hi


def prepare_pairs(i, j, preds, target, n_images):
  """Host-side, once: sorted pair images, tie runs, scaled values (padded)."""
  i = np.asarray(i).ravel()
  j = np.asarray(j).ravel()
  t = np.asarray(target, np.float64).ravel()
  names = list(preds)
  ps = [np.asarray(preds[k], np.float64).ravel() for k in names]
  p = t.size
  if not names:
    raise InputError('preds is empty: pass name -> [P] predictions')
  if i.shape != (p,) or j.shape != (p,) or any(v.shape != (p,) for v in ps):
    raise InputError(
      f'i {i.shape}, j {j.shape}, target {t.shape}, preds '
      f'{[v.shape for v in ps]}: pass [P] arrays of one length'
    )
  if p < 1:
    raise InputError('no pairs: pass P >= 1')
  if i.min() < 0 or j.max() >= n_images or np.any(i >= j):
    raise InputError(
      f'pair indices must satisfy 0 <= i < j < n_images={n_images}'
    )
  if not all(np.isfinite(v).all() for v in [t, *ps]):
    raise InputError('target and predictions must be finite')
  # Pairs in the target's order: its sorted weights are the pair weights.
  ot = np.argsort(t, kind='stable')
  i, j, t = i[ot], j[ot], t[ot]
  ps = [v[ot] for v in ps]
  # Pads up to a multiple of the cumsum blocks are pairs of a phantom image
  # n_images, drawn 0 times: weight 0, sorted last in every order.
  pp = -(-p // (_B1 * _B2)) * _B1 * _B2
  pad = np.arange(p, pp, dtype=np.int32)

  def padded(v, fill):
    return np.concatenate([v, np.full(pp - p, fill, v.dtype)])

  ii, jj, lo, hi = [], [], [], []
  for v in [t, *ps]:
    o, lo_v, hi_v = _run_bounds(v)
    ii.append(padded(i[o].astype(np.int32), n_images))
    jj.append(padded(j[o].astype(np.int32), n_images))
    lo.append(np.concatenate([lo_v, pad]))
    hi.append(np.concatenate([hi_v, pad + 1]))
  sd_t = t.std() or 1.0
  x = [(t - t.mean()) / sd_t] + [(v - v.mean()) / (v.std() or 1.0) for v in ps]
  d = [(t - v) / sd_t for v in ps]
  # Cosine: raw values over their largest magnitude (its scale cancels).
  a = [v / (np.abs(v).max() or 1.0) for v in [t, *ps]]
  consts = {
    'i': np.stack(ii),  # [V, pp] pair images in each vector's sorted order
    'j': np.stack(jj),
    'lo': np.stack(lo),  # [V, pp] per pair: its tie run's sorted positions
    'hi': np.stack(hi),  # [lo, hi) in each vector's order
    'x': np.stack([padded(v, 0.0) for v in x]).astype(np.float32),
    'd': np.stack([padded(v, 0.0) for v in d]).astype(np.float32),
    'a': np.stack([padded(v, 0.0) for v in a]).astype(np.float32),
  }
  return names, consts


def _cumsum(ws: jax.Array) -> jax.Array:
  """Inclusive cumulative sum along the last axis, exact, as int32.

  ws: [V, pp] float32 integer weights below 2^24 / 4096. Two levels of
  block matrix products with a triangle of ones (XLA's CPU cumsum is
  several times slower); block sums stay below 2^24, so float32 is exact,
  and the offsets between outer blocks add up in int32.
  """
  v, pp = ws.shape
  u1 = jnp.triu(jnp.ones((_B1, _B1), jnp.float32))
  u2 = jnp.triu(jnp.ones((_B2, _B2), jnp.float32))
  # HIGHEST: full float32 products also where the default is TF32 (GPUs).
  dot = functools.partial(jnp.matmul, precision=lax.Precision.HIGHEST)
  y = dot(ws.reshape(-1, _B1), u1).reshape(v, -1, _B1)
  t1 = y[..., -1]  # [V, pp / B1] block totals
  y2 = dot(t1.reshape(-1, _B2), u2).reshape(v, -1, _B2)
  t2 = y2[..., -1].astype(jnp.int32)  # [V, pp / (B1 B2)]
  off2 = jnp.cumsum(t2, -1) - t2
  off1 = (y2 - t1.reshape(y2.shape)).astype(jnp.int32) + off2[..., None]
  out = y.astype(jnp.int32) + off1.reshape(v, -1)[..., None]
  return out.reshape(v, pp)


def _two_sum(a, b):
  """(s1, c1) + (s2, c2) -> (s, c): s = fl(s1 + s2) and c = c1 + c2 + the
  exact rounding error of s (Knuth's TwoSum, six flops)."""
  (s1, c1), (s2, c2) = a, b
  s = s1 + s2
  b_virtual = s - s1
  err = (s1 - (s - b_virtual)) + (s2 - b_virtual)
  return s, c1 + c2 + err


def _sum(x: jax.Array) -> jax.Array:
  """Compensated float32 sum over the last axis (a multiple of 8).

  XLA chooses a reduction's order per machine (on a CPU it merges blocked
  sums into one reduce and picks the kernel by the instruction set), and a
  long float32 chain of sorted pairs' terms drifts (1.6e-6 in a Spearman
  on an EPYC). Here the order does not matter: three pairwise halvings
  (rounding <= 3u of sum |x|, u = 2^-24), then a reduce that carries each
  add's exact rounding error (TwoSum) in a second float32 and adds it back
  (about u |sum| + n u^2 sum |x|, in any order). One fused pass, as fast as a
  plain reduce.
  """
  for _ in range(_PAIRWISE_LEVELS):
    h = x.shape[-1] // 2
    x = x[..., :h] + x[..., h:]
  zero = np.float32(0)
  s, c = lax.reduce(
    (x, jnp.zeros_like(x)), (zero, zero), _two_sum, (x.ndim - 1,)
  )
  return s + c


def _pow2_inverse(x: jax.Array) -> jax.Array:
  """2^-floor(log2 x) for a float32 x >= 1, exactly (from its exponent)."""
  e = lax.shift_right_logical(lax.bitcast_convert_type(x, jnp.int32), 23)
  return lax.bitcast_convert_type(lax.shift_left(254 - e, 23), jnp.float32)


def _one_draw(c, consts, stats):
  """The statistics `stats` [K] each for one draw's counts c [n + 1]."""
  out = {}
  if any(s in _RANKED for s in stats):
    ws = c[consts['i']] * c[consts['j']]  # [V, pp] weights, sorted orders
    w = ws[0]  # pair order = the target's sorted order
  else:
    w = c[consts['i'][0]] * c[consts['j'][0]]
  big_w = w.astype(jnp.int32).sum()
  scale = 1.0 / jnp.maximum(big_w, 1).astype(jnp.float32)
  if any(s in _RANKED for s in stats):
    cw = _cumsum(ws)  # [V, pp] inclusive
    # Exclusive sums, materialized by the concatenation: XLA fuses a cheap
    # producer into the gathers below, recomputing the block sums per
    # gathered element (measured 10x slower).
    e0 = jnp.concatenate([jnp.zeros_like(cw[:, :1]), cw], 1)
    # A tie run at sorted positions [lo, hi) spans the cumulative weights
    # (S, E] = (e0[lo], e0[hi]]: 2 * average rank - (W + 1) = S + E - W,
    # exact, in pair order (no overflow: S - W <= 0).
    lo, hi = consts['lo'], consts['hi']
    ranks = jnp.stack(
      [(e0[v][lo[v]] - big_w) + e0[v][hi[v]] for v in range(cw.shape[0])]
    )
    # Scaled by a power of two near 1 / W, so still exact (a rounded 1 / W
    # rounds every rank: 2u more error in each term of the sums below).
    wf = jnp.maximum(big_w, 1).astype(jnp.float32)
    q = _pow2_inverse(wf)
    rk = ranks.astype(jnp.float32) * q
    rt, rp = rk[0], rk[1:]
    wrt = w * rt
    cross = _sum(wrt * rp)  # q^2 sum w R_t R_p, R = 2 rank - (W + 1)
    if 'spearman' in stats:
      out['spearman'] = cross / jnp.sqrt(_sum(wrt * rt) * _sum(w * rp * rp))
    if 'rho_a' in stats:
      # 12 sum w (R_t / 2)(R_p / 2) / (W^3 - W), as
      # 3 cross / ((q W) (q (W - 1)(W + 1))): q W in [1, 2), exact.
      den = (q * wf) * (q * ((wf - 1.0) * (wf + 1.0)))
      safe = jnp.where(big_w > 1, den, 1.0)
      out['rho_a'] = jnp.where(big_w > 1, 3.0 * cross / safe, jnp.nan)
  if 'pearson' in stats or 'r2' in stats:
    x = consts['x']
    xc = x - (_sum(w * x) * scale)[:, None]
    sxx = _sum(w * xc * xc)
  if 'pearson' in stats:
    out['pearson'] = _sum(w * xc[0] * xc[1:]) / jnp.sqrt(sxx[0] * sxx[1:])
  if 'r2' in stats:
    ss_res = _sum(w * consts['d'] * consts['d'])
    ss_tot = sxx[0]
    safe = jnp.where(ss_tot > 0, ss_tot, 1.0)
    r2 = jnp.where(
      ss_tot > 0, 1.0 - ss_res / safe, jnp.where(ss_res > 0, 0.0, 1.0)
    )
    out['r2'] = jnp.where(big_w > 0, r2, jnp.nan)  # no pair drawn
  if 'cosine' in stats:
    a = consts['a']
    wat = w * a[0]
    at, ap = _sum(wat * a[0]), _sum(w * a[1:] * a[1:])
    both = (at > 0) & (ap > 0)
    cos = _sum(wat * a[1:]) / jnp.where(both, jnp.sqrt(at) * jnp.sqrt(ap), 1.0)
    cos = jnp.where(both, cos, 0.0)  # rsatoolbox: 0 for an all-zero RDM
    out['cosine'] = jnp.where(big_w > 0, cos, jnp.nan)
  return tuple(out[s] for s in stats)


@functools.partial(jax.jit, static_argnames='stats')
def _draws(counts, consts, stats=PAIR_STATS):
  """counts: [B, N] int32, image n (the phantom) and those past it 0."""
  c = counts.astype(jnp.float32)
  return lax.map(lambda ci: _one_draw(ci, consts, stats), c)


def _consts_for(stats: tuple[str, ...]) -> tuple[str, ...]:
  """The `prepare_pairs` arrays that `_one_draw` reads for `stats`."""
  keys = ['i', 'j']
  if any(s in _RANKED for s in stats):
    keys += ['lo', 'hi']
  if 'pearson' in stats or 'r2' in stats:
    keys.append('x')
  if 'r2' in stats:
    keys.append('d')
  if 'cosine' in stats:
    keys.append('a')
  return tuple(keys)


def _check_stats(stats) -> tuple[str, ...]:
  stats = (stats,) if isinstance(stats, str) else tuple(stats)
  unknown = [s for s in stats if s not in ALL_PAIR_STATS]
  if unknown or not stats or len(set(stats)) != len(stats):
    raise InputError(
      f'stats {stats}: pass distinct names among {ALL_PAIR_STATS}'
    )
  return stats


def count_width(n_images: int) -> int:
  """Columns of the counts `_draws` takes: the n images, the phantom and
  zeros up to a bucket (at least 128, then `width_bucket`), so image sets
  of similar size (a run's test images, the leaked run's) share a
  program. Images never paired weigh nothing: the same statistics."""
  return max(128, width_bucket(n_images + 1))


def weighted_pair_stats(
  i,
  j,
  preds: dict,
  target,
  counts,
  n_images: int | None = None,
  *,
  stats=PAIR_STATS,
) -> dict[str, dict[str, np.ndarray]]:
  """Pair statistics of each prediction for given image counts.

  Draw b weights pair (i, j) by counts[b, i] * counts[b, j]: the statistic
  of the multiset in which image k comes counts[b, k] times (pairs of two
  copies of one image left out). All-ones counts give the plain statistics.

  Args:
    i, j: [P] int pair images, 0 <= i < j < n_images (any subset of pairs).
    preds: name -> [P] predicted dissimilarities.
    target: [P] true dissimilarities.
    counts: [B, n_images] non-negative int counts
      (`rdmjax.rsa.inference.bootstrap_counts`).
    n_images: image-set size (default counts.shape[1]).
    stats: names among `ALL_PAIR_STATS` (default `PAIR_STATS`); only these
      are computed.

  Returns:
    name -> {stat: [B] float64} for stat in stats.
  """
  counts = np.asarray(counts)
  if counts.ndim != 2:
    raise InputError(f'counts shape {counts.shape}: pass [B, n_images]')
  n = counts.shape[1] if n_images is None else int(n_images)
  if counts.shape[1] != n:
    raise InputError(f'counts shape {counts.shape}: pass [B, {n}]')
  prepared = prepare_pairs(i, j, preds, target, n)
  return run_draws(prepared, counts, stats=stats)


def run_draws(
  prepared, counts: np.ndarray, stats=PAIR_STATS
) -> dict[str, dict[str, np.ndarray]]:
  """`weighted_pair_stats` of `prepare_pairs` output: chunks of draws.

  stats: names among `ALL_PAIR_STATS`, each computed only when named
  (default `PAIR_STATS`); the result's inner keys, in this order.
  """
  stats = _check_stats(stats)
  names, consts = prepared
  n = counts.shape[1]
  # Exact float32 block sums need weights below 2^24 / 4096 (counts < 64);
  # the total weight must fit int32.
  cmax = int(counts.max())
  p = consts['x'].shape[1]
  if counts.min() < 0 or cmax * cmax * _B1 * _B2 >= 2**24:
    raise InputError(f'counts in [{counts.min()}, {cmax}]: need 0 to 63')
  if min(n * n // 2, p * cmax * cmax) >= 2**31:
    raise InputError(f'{p} pairs, counts up to {cmax}: total weight > int32')
  # device_put, not jnp.asarray: that compiles a program per array shape.
  consts = jax.device_put({k: consts[k] for k in _consts_for(stats)})
  b = counts.shape[0]
  chunk = min(_CHUNK, b)
  width = count_width(n)
  out = []
  for s in range(0, b, chunk):
    part = np.zeros((chunk, width), np.int32)
    real = min(chunk, b - s)
    part[:real, :n] = counts[s : s + real]
    part[real:, :n] = 1  # filler draws
    fill = chunk - real
    got = _draws(part, consts, stats)
    out.append([np.asarray(g, np.float64)[: chunk - fill] for g in got])
  cols = [np.concatenate([o[q] for o in out]) for q in range(len(stats))]
  return {
    name: {s: cols[q][:, k] for q, s in enumerate(stats)}
    for k, name in enumerate(names)
  }
