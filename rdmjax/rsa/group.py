"""Group-level statistics over subjects (NSD: 8 subjects, overlapping images).

Subjects saw partly overlapping image sets, named by 0-based NSD ids (each
subject's `nsd_ids('train')`; the "shared 1000" appear in several of them).
Everything here is a pure function of numpy/JAX arrays keyed by subject name.

- `shared_images`: the NSD ids that all given subjects saw (sorted), and
  each subject's row indices of them, to cut responses or RDMs to one
  common image order.
- `intersubject_consistency`: RDMs of several subjects over the same images
  -> the [S, S] matrix of `rdmjax.rsa.compare.compare_rdms` between every pair
  (Spearman on upper triangles by default: exact average ranks, as scipy's
  `spearmanr`).
- `pairwise_consistency`: responses over each subject's own images -> per
  pair of subjects, RDMs (`rdmjax.rsa.rdm.rdm`) over the images that pair
  shares (a pair may share more than all subjects share) and their
  Spearman; pairs with fewer than `min_images` shared images give NaN.
- `noise_ceiling`: leave-one-subject-out bounds as rsatoolbox's
  `rsatoolbox.inference.boot_noise_ceiling` (with `pool_rdm` from
  `rsatoolbox.util.inference_util`). Subject s is compared with the pooled
  RDM of ALL subjects (upper bound) and with that of the OTHER subjects
  (lower bound); the bounds are means over subjects. Pooling depends on
  the method, exactly as rsatoolbox:

  - 'spearman': each subject's upper triangle is rank-transformed (scipy
    `rankdata`, average ties) and the ranks are averaged; the comparison
    then ranks that mean again and takes the Pearson of the two rank
    vectors (rsatoolbox's `compare_spearman`). Here the rank sums are held
    exactly (multiples of 1/2 in float64: the mean of the others is the
    total minus one's own) and ranked by scipy, so the result is rsatoolbox's
    to float64 rounding.
  - 'corr' (alias 'pearson'): each upper triangle is z-scored (population
    std, ddof=0) and the z-scores averaged (rsatoolbox then subtracts the
    minimum, which no correlation sees); Pearson with the subject's raw
    upper triangle.
  - 'cosine' (rsatoolbox's default): each triangle divided by its root mean
    square, averaged; cosine similarity.

  Computed in float64 on the host (S x n(n-1)/2 values: cheap), not with
  `compare_rdms`, which takes float32 input.
- `consistency_bootstrap`: the same images resampled with replacement (as
  `rdmjax.rsa.inference`): 95% intervals of the mean pairwise Spearman and of
  both Spearman noise-ceiling bounds.
- `mean_sem`: mean, SEM (ddof=1 std / sqrt(n)) and a Student-t interval of
  per-subject values; None and NaN values are left out and counted.
- `transfer_matrix`: score_fn(train, test) for every ordered pair of
  subjects -> [S, S] floats; a failing call gives NaN and its message.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from scipy import stats as sps

from rdmjax.errors import InputError
from rdmjax.rsa import compare as compare_lib
from rdmjax.rsa import inference
from rdmjax.rsa import rdm as rdm_lib
from rdmjax.rsa.compare import (
  ALL_METHODS,
  compare_many,
  method_name,
  rdm_set,
  triangle_size,
)

__all__ = [
  'NOISE_CEILING_METHODS',
  'consistency_bootstrap',
  'intersubject_consistency',
  'mean_sem',
  'noise_ceiling',
  'pairwise_consistency',
  'shared_images',
  'transfer_matrix',
]

# Every comparison method (and its aliases, `compare.METHOD_ALIASES`).
NOISE_CEILING_METHODS = ALL_METHODS
# Methods whose pooled RDM is the mean of the subjects' ranks (rsatoolbox's
# `pool_rdm`: the tau ceilings too, 'based on averaged ranks').
_RANK_POOLED = ('spearman', 'spearman_rho_a', 'kendall_tau_a', 'kendall_tau_b')


def _ids(name: str, ids) -> np.ndarray:
  a = np.asarray(ids)
  if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
    raise InputError(
      f'NSD ids of {name}: shape {a.shape}, dtype {a.dtype}; pass a 1-D '
      'array of integer ids'
    )
  a = a.astype(np.int64)
  if np.unique(a).size != a.size:
    raise InputError(
      f'NSD ids of {name} repeat an id: pass one row per image (average '
      'the repeats first)'
    )
  return a


def _rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
  """Row indices in ids (unique) of wanted (all present in ids)."""
  order = np.argsort(ids, kind='stable')
  return order[np.searchsorted(ids, wanted, sorter=order)]


def shared_images(
  ids_per_subject: Mapping[str, np.ndarray],
  subjects: Iterable[str] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """The NSD ids that all given subjects share, and their rows per subject.

  Args:
    ids_per_subject: subject -> [n_s] unique integer NSD ids of its rows.
    subjects: which subjects (default: all keys, in order).

  Returns:
    (common_ids, rows): common_ids [k] int64 sorted ascending; rows maps each
    subject to [k] int64 indices into its ids with
    ids[s][rows[s]] == common_ids.
  """
  names = list(ids_per_subject) if subjects is None else list(subjects)
  if not names:
    raise InputError('no subjects given: pass at least one')
  missing = [s for s in names if s not in ids_per_subject]
  if missing:
    raise InputError(
      f'subjects {missing} have no ids: known are {list(ids_per_subject)}'
    )
  ids = {s: _ids(s, ids_per_subject[s]) for s in names}
  common = functools.reduce(np.intersect1d, (ids[s] for s in names))
  common = np.unique(common).astype(np.int64)  # one subject: sort it too
  return common, {s: _rows_of(ids[s], common) for s in names}


def _consistency_matrix(rdms: compare_lib.RdmSet, method: str, nan: str):
  """[S, S] similarity of every pair (diagonal 1, or NaN if constant)."""
  xs = rdms.rdms
  k = len(xs)
  if method in compare_lib._GRAM_METHODS:  # one product for all pairs
    mat = compare_lib._compare_sets(xs, xs, method, nan)
  else:
    mat = np.eye(k)
    for i in range(k):
      for j in range(i + 1, k):
        pair = compare_lib._aligned(xs[i], xs[j], nan)
        mat[i, j] = mat[j, i] = compare_lib._pair(*pair, method)
  for i, x in enumerate(xs):
    mat[i, i] = np.nan if np.ptp(x.host) == 0 else 1.0
  return mat


def _off_diagonal_mean(mat: np.ndarray) -> float:
  v = mat[np.triu_indices(mat.shape[0], 1)]
  v = v[np.isfinite(v)]
  return float(v.mean()) if v.size else float('nan')


def _subjects(rdms, what: str = 'rdms') -> compare_lib.RdmSet:
  """Several subjects' RDMs as `compare_rdms` takes them (dict, list,
  [k, n, n] or [k, m] stack, rsatoolbox RDMs), at least two."""
  got = rdm_set(rdms, what)
  if got.single or len(got.rdms) < 2:
    raise InputError(
      f'{len(got.rdms)} RDM(s) in {what}: pass RDMs of at least two subjects'
      ' (a dict, a list, or a [k, n, n] stack)'
    )
  return got


def intersubject_consistency(
  rdms, method: str = 'spearman', *, nan: str = 'same'
) -> dict:
  """Similarity of every pair of subjects' RDMs over the same images.

  Args:
    rdms: subject -> [n, n] RDM (or its condensed upper triangle), all over
      the same n images in the same order (see `shared_images`); or a
      list, a [k, n, n] or [k, m] stack, an rsatoolbox `RDMs` (subjects
      0..k-1, or its 'name' descriptor). NaN marks a pair not measured.
    method: of `rdmjax.rsa.compare.ALL_METHODS` or an alias (default
      'spearman').
    nan: as `rdmjax.rsa.compare.compare_rdms`: 'same' (subjects miss the
      same pairs, left out) or 'drop_union' (each pair of subjects on the
      pairs both have).

  Returns:
    {'subjects': [S] names, 'matrix': [S, S] float64 (symmetric, 1 on the
    diagonal, NaN there for a constant RDM), 'mean': mean of the finite
    off-diagonal pairs, 'method': its rdmjax name}.
  """
  method = method_name(method)
  compare_lib._check_nan(nan)
  got = _subjects(rdms)
  mat = _consistency_matrix(got, method, nan)
  return {
    'subjects': got.names,
    'matrix': mat,
    'mean': _off_diagonal_mean(mat),
    'method': method,
  }


def pairwise_consistency(
  responses: Mapping[str, np.ndarray],
  ids: Mapping[str, np.ndarray],
  metric: str = 'correlation',
  min_images: int = 10,
  method: str = 'spearman',
) -> dict:
  """Per pair of subjects: RDM similarity over the images that pair shares.

  For subjects s, t the shared NSD ids are found (sorted), both RDMs are
  computed with `rdmjax.rsa.rdm.rdm(x[rows], metric)` over those rows, and
  compared with `compare_rdms(.., method)`.

  Args:
    responses: subject -> [n_s, v_s] responses over its own images.
    ids: subject -> [n_s] unique NSD ids of those rows.
    metric: an `rdmjax.rsa.rdm.METRICS` RDM metric.
    min_images: pairs sharing fewer images give NaN (and a reason).
    method: of `rdmjax.rsa.compare.ALL_METHODS` or an alias.

  Returns:
    {'subjects': [S] names, 'matrix': [S, S] float64 (diagonal 1),
    'n_images': [S, S] int64 shared image counts (diagonal n_s), 'mean':
    mean of the finite off-diagonal pairs, 'skipped': {(s, t): reason},
    'metric', 'method'}.
  """
  method = method_name(method)
  if metric not in rdm_lib.METRICS:
    raise InputError(f'metric {metric!r} unknown: use {rdm_lib.METRICS}')
  min_images = max(int(min_images), 3)  # 3 pairs at least for a correlation
  names = list(responses)
  if set(names) != set(ids):
    raise InputError(
      f'responses for {sorted(responses)} but ids for {sorted(ids)}: pass '
      'both for the same subjects'
    )
  if len(names) < 2:
    raise InputError(f'{len(names)} subject(s): pass at least two')
  sid = {}
  for s in names:
    sid[s] = _ids(s, ids[s])
    n = np.shape(responses[s])[0]
    if n != sid[s].size:
      raise InputError(
        f'{s}: {n} response rows but {sid[s].size} ids; pass one id per row'
      )
  k = len(names)
  mat, counts = np.eye(k), np.zeros((k, k), np.int64)
  skipped = {}
  for i, s in enumerate(names):
    counts[i, i] = sid[s].size
    for j in range(i + 1, k):
      t = names[j]
      common, rows = shared_images(sid, (s, t))
      counts[i, j] = counts[j, i] = common.size
      if common.size < min_images:
        mat[i, j] = mat[j, i] = np.nan
        skipped[(s, t)] = (
          f'{common.size} shared images, fewer than min_images={min_images}'
        )
        continue
      a = rdm_lib.rdm(np.asarray(responses[s])[rows[s]], metric)
      b = rdm_lib.rdm(np.asarray(responses[t])[rows[t]], metric)
      mat[i, j] = mat[j, i] = compare_many(a, {0: b}, (method,))[0][method]
  return {
    'subjects': names,
    'matrix': mat,
    'n_images': counts,
    'mean': _off_diagonal_mean(mat),
    'skipped': skipped,
    'metric': metric,
    'method': method,
  }


def _triangle(r) -> np.ndarray:
  """[n, n] or condensed [m] -> float64 [m] (scipy squareform order)."""
  r = np.asarray(r, np.float64)
  if r.ndim == 2 and r.shape[0] == r.shape[1]:
    return r[np.triu_indices(r.shape[0], 1)]
  if r.ndim != 1:
    raise InputError(f'RDM shape {r.shape}: pass [n, n] or condensed [m]')
  return r


def _nan_ranks(v: np.ndarray) -> np.ndarray:
  """Average ranks of the measured entries of v [m]; NaN stays NaN."""
  out = np.full(v.shape, np.nan)
  keep = ~np.isnan(v)
  out[keep] = compare_lib.average_ranks(v[keep])
  return out


def _pool_parts(v: np.ndarray, method: str) -> np.ndarray:
  """[S, m] float64 (NaN: missing) -> what the pooled RDM averages, per
  subject, as rsatoolbox's `pool_rdm` (CKA: each RDM over the Frobenius
  norm of its double-centred matrix, so that the mean's centred kernel is
  the mean of the subjects' unit kernels)."""
  if method in _RANK_POOLED:
    return np.stack([_nan_ranks(x) for x in v])
  with np.errstate(invalid='ignore', divide='ignore'):
    if method == 'pearson':
      c = v - np.nanmean(v, 1, keepdims=True)
      return c / np.nanstd(c, 1, keepdims=True)
    if method == 'cosine':
      norm = np.sqrt(np.nanmean(v**2, 1, keepdims=True))
      return v / np.where(norm > 0, norm, 1.0)  # a zero RDM pools as zeros
  norms = np.sqrt([compare_lib.centred_norm2(x) for x in v])  # cka
  return v / np.where(norms > 0, norms, 1.0)[:, None]


def _pool(parts: np.ndarray) -> np.ndarray:
  """Mean over subjects of each pair (np.mean, as rsatoolbox), over those
  that measured it where some did not (NaN where none did)."""
  if not np.isnan(parts).any():
    return parts.mean(0)
  with np.errstate(invalid='ignore'), warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # an all-NaN pair
    return np.nanmean(parts, 0)


def loo_pools(parts: np.ndarray):
  """`_pool_parts` output [S, m] -> (the pool of all subjects, a function
  i -> the pool of all but subject i): the noise ceiling's two RDMs."""
  pool_all = _pool(parts)
  if np.isnan(parts).any():
    return pool_all, lambda i: _pool(np.delete(parts, i, axis=0))
  total, k = parts.sum(0), parts.shape[0]
  # No [S - 1, m] copy per subject; for ranks (multiples of 1/2) the sum of
  # the others is exact, so this is np.mean's value.
  return pool_all, lambda i: (total - parts[i]) / (k - 1)


def noise_ceiling(rdms, method: str = 'spearman', *, nan: str = 'same') -> dict:
  """Leave-one-subject-out noise ceiling, as rsatoolbox's boot_noise_ceiling.

  Upper bound: each subject against the pooled RDM of all subjects; lower
  bound: against the pooled RDM of the others; both averaged over subjects.
  Pooling per method as rsatoolbox's `pool_rdm`: the mean of the subjects'
  average ranks for the rank methods (spearman, rho-a, tau-a, tau-b; the
  comparison ranks that mean again), of z-scored RDMs for 'pearson', of
  RDMs over their root mean square for 'cosine'; for 'cka' (not in
  rsatoolbox) of RDMs over the Frobenius norm of their double-centred
  matrix. Float64 on the host; the comparisons are `compare_rdms`'.

  Args:
    rdms: subject -> [n, n] RDM (or condensed upper triangle) over the same
      images in the same order, at least two subjects; or a list, a
      [k, n, n] or [k, m] stack, an rsatoolbox `RDMs`. NaN marks a pair not
      measured.
    method: any of `rdmjax.rsa.compare.ALL_METHODS` or an alias ('corr',
      'tau-a', 'rho-a', ...).
    nan: 'same' (default): subjects miss the same pairs (rsatoolbox's
      rule), which are left out; else one line says so. 'drop_union': each
      pair is pooled over the subjects that measured it and each subject
      compared with the pool on its own measured pairs.

  Returns:
    {'lower': float, 'upper': float, 'per_subject_lower': {subject: float},
    'per_subject_upper': {subject: float}, 'n_pairs': {subject: measured
    pairs}, 'method': its rdmjax name}.
  """
  method = method_name(method)
  compare_lib._check_nan(nan)
  got = _subjects(rdms)
  names = got.names
  if got.rdms[0].size < 3:
    raise InputError(
      f'{got.rdms[0].size} pairs: pass RDMs of at least 3 images'
    )
  keys = {r.key for r in got.rdms}
  if len(keys) > 1 and nan == 'same':
    counts = [int(r.size - r.m) for r in got.rdms]
    raise InputError(
      f'subjects miss different pairs (NaN counts {counts}): pass RDMs with'
      " NaN at the same pairs, or nan='drop_union' to pool each pair over "
      'the subjects that measured it'
    )
  if method == 'cka' and any(r.missing is not None for r in got.rdms):
    raise InputError('cka needs every pair of each RDM: fill the NaN pairs')
  v = np.stack([r.values() for r in got.rdms]).astype(np.float64)  # [S, m]
  parts = _pool_parts(v, method)
  pool_all, pool_others = loo_pools(parts)
  upper, lower = {}, {}
  for i, s in enumerate(names):
    others = pool_others(i)
    res = compare_many(
      v[i], {'upper': pool_all, 'lower': others}, (method,), nan='drop_union'
    )
    upper[s], lower[s] = res['upper'][method], res['lower'][method]
  return {
    'lower': float(np.mean(list(lower.values()))),
    'upper': float(np.mean(list(upper.values()))),
    'per_subject_lower': lower,
    'per_subject_upper': upper,
    'n_pairs': {s: int(r.m) for s, r in zip(names, got.rdms)},
    'method': method,
  }


def consistency_bootstrap(
  rdms,
  n_boot: int = 1000,
  seed: int = 0,
  level: float = 0.95,
  *,
  nan: str = 'same',
) -> dict:
  """Intervals of the mean pairwise Spearman and the noise-ceiling bounds.

  A draw resamples the shared images with replacement (`rdmjax.rsa.inference`:
  pair (i, j) weighted c_i * c_j, pairs of one image's copies left out) and
  scores every Spearman of `intersubject_consistency` and of
  `noise_ceiling(.., 'spearman')` on it, with the same draws for all (so
  the means' draws are draws of the means). The pooled RDMs are pooled
  once on the original images and resampled with the subjects' RDMs;
  rsatoolbox's `boot_noise_ceiling` pools each resampled set again, which
  re-ranks the pooled ranks within the draw (the ranks' order, which the
  Spearman sees, is the same but for the copies' ties).

  Args:
    rdms: subject -> [n, n] RDM or condensed triangle, same images/order
      (or a list, stack or rsatoolbox `RDMs`); NaN marks a pair not
      measured.
    n_boot: draws.
    seed: `rdmjax.rsa.inference.bootstrap_counts` seed.
    level: interval coverage.
    nan: 'same' (subjects miss the same pairs, left out) or 'drop_union'
      (the pairs any subject misses are left out of all).

  Returns:
    {'mean', 'lower', 'upper'}: each `rdmjax.rsa.inference.summarize` without
    'samples' ({'value', 'low', 'high', 'sd'}), 'value' equal to
    `intersubject_consistency`'s 'mean' and `noise_ceiling`'s bounds;
    'n_boot', 'n_pairs' (the pairs scored).
  """
  compare_lib._check_nan(nan)
  got = _subjects(rdms)
  names = got.names
  v = np.stack([r.values() for r in got.rdms]).astype(np.float64)
  m = v.shape[1]
  n = triangle_size(m)
  if n < 3:
    raise InputError(f'{m} dissimilarities are no RDM of at least 3 images')
  i, j = np.triu_indices(n, 1)
  missing = np.isnan(v)
  if missing.any():
    if nan == 'same' and len({r.key for r in got.rdms}) > 1:
      raise InputError(
        'subjects miss different pairs: pass RDMs with NaN at the same pairs,'
        " or nan='drop_union' to leave out every pair a subject misses"
      )
    keep = ~missing.any(0)
    i, j, v = i[keep], j[keep], v[:, keep]
  ranks = np.stack([sps.rankdata(x) for x in v])
  total = ranks.sum(0)
  k = len(names)
  pair_draws, low_draws, up_draws = [], [], []
  for a in range(k):
    preds = {f'p{b}': v[b] for b in range(a + 1, k)}
    preds['lower'] = sps.rankdata(total - ranks[a])
    preds['upper'] = sps.rankdata(total)
    got = inference.bootstrap_pair_scores(i, j, preds, v[a], n, n_boot, seed)
    draws = {
      name: np.concatenate([[g['spearman']['value']], g['spearman']['samples']])
      for name, g in got.items()
    }
    pair_draws += [draws[f'p{b}'] for b in range(a + 1, k)]
    low_draws.append(draws['lower'])
    up_draws.append(draws['upper'])
  out = {'n_boot': int(n_boot), 'n_pairs': int(v.shape[1])}
  for name, d in (
    ('mean', pair_draws),
    ('lower', low_draws),
    ('upper', up_draws),
  ):
    d = np.mean(d, axis=0)  # row 0: the original images
    got = inference.summarize(d[0], d[1:], level)
    out[name] = {key: x for key, x in got.items() if key != 'samples'}
  return out


def _missing(x) -> bool:
  if x is None:
    return True
  try:
    return math.isnan(float(x))
  except (TypeError, ValueError) as e:
    raise InputError(f'value {x!r}: pass a number, None or NaN') from e


def mean_sem(
  values: Mapping[str, float | None], confidence: float = 0.95
) -> dict:
  """Mean, standard error and Student-t interval of per-subject values.

  Args:
    values: subject -> value; None and NaN are left out (and counted).
    confidence: the interval's level (default 0.95).

  Returns:
    {'mean', 'sem' (ddof=1 std / sqrt(n)), 'ci_low', 'ci_high' (mean +-
    t_{n-1} quantile * sem; NaN for n < 2), 'n', 'n_excluded', 'excluded':
    [names], 'values': {subject: float} of the kept ones}. An empty set
    gives NaN throughout.
  """
  if not 0 < confidence < 1:
    raise InputError(f'confidence {confidence}: pass a level in (0, 1)')
  kept = {s: float(x) for s, x in values.items() if not _missing(x)}
  excluded = [s for s in values if s not in kept]
  x = np.array(list(kept.values()), np.float64)
  n = x.size
  nan = float('nan')
  mean = float(x.mean()) if n else nan
  sem = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else nan
  if n < 2:
    lo = hi = nan
  elif sem == 0:
    lo = hi = mean
  else:
    lo, hi = (float(b) for b in sps.t.interval(confidence, n - 1, mean, sem))
  return {
    'mean': mean,
    'sem': sem,
    'ci_low': lo,
    'ci_high': hi,
    'n': n,
    'n_excluded': len(excluded),
    'excluded': excluded,
    'values': kept,
  }


def transfer_matrix(
  score_fn: Callable[[str, str], float], subjects: Iterable[str]
) -> tuple[list[str], np.ndarray, dict[tuple[str, str], str]]:
  """score_fn(train_subject, test_subject) for every ordered pair.

  Args:
    score_fn: (train, test) -> a number (the diagonal is train == test).
    subjects: subject names, in the order of the matrix.

  Returns:
    (names, scores, errors): scores [S, S] float64 with
    scores[i, j] = score_fn(names[i], names[j]); a call that raises an
    Exception, or returns no number, gives NaN and errors[(train, test)] =
    'ErrorType: message'.
  """
  names = list(subjects)
  if len(set(names)) != len(names):
    raise InputError(f'subjects {names} repeat a name')
  scores = np.full((len(names), len(names)), np.nan)
  errors = {}
  for i, a in enumerate(names):
    for j, b in enumerate(names):
      try:
        scores[i, j] = float(score_fn(a, b))
      except Exception as e:  # noqa: BLE001 (any failure -> NaN, recorded)
        errors[(a, b)] = f'{type(e).__name__}: {e}'
  return names, scores, errors
