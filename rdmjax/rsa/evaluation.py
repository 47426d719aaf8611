"""Model RDMs against data RDMs, with inference over images, subjects or both.

`compare_models(models, data, method, over)` is rsatoolbox's
`eval_bootstrap_pattern` (over='images'), `eval_bootstrap_rdm`
('subjects') and `eval_dual_bootstrap` ('both'), for fixed model RDMs and
any comparison method of `rdmjax.rsa.compare`:

- A draw over images resamples the n images with replacement (counts c,
  `rdmjax.rsa.inference.bootstrap_counts`); a pair (i, j) of two different
  images then comes c_i c_j times and pairs of one image's copies are left
  out (rsatoolbox sets them to NaN). Spearman, Pearson, rho-a and cosine
  of that expanded multiset are weighted statistics of the original pairs
  (`rdmjax.rsa._weighted`, on the device, never expanded); Kendall's tau
  and CKA expand each draw's RDMs on the host (CKA keeps the copies' zero
  distances: it needs the whole square). Fed the same resampled images,
  every draw equals rsatoolbox's.
- A draw over subjects resamples the data RDMs with replacement; the
  evaluation of a model is the mean of its similarity to the drawn
  subjects.
- 'both' draws images and subjects together and, as rsatoolbox, corrects
  the variance of those draws (which counts both sources of noise twice)
  with the image-only and subject-only draws made from the same samples
  (Schuett et al. 2023): intervals are then t intervals with that
  variance.

The noise ceiling is `rdmjax.rsa.group.noise_ceiling` on the original data;
its draws score every subject against the pooled RDMs of the original
subjects (the pools are not recomputed within a draw, as rsatoolbox's
`boot_noise_ceiling` does on each resampled set).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from rdmjax.errors import InputError
from rdmjax.rsa import _weighted, group, inference
from rdmjax.rsa import compare as compare_lib

__all__ = ['OVER', 'compare_models', 'draw_scores']

OVER = ('images', 'subjects', 'both')
# rdmjax method -> the weighted statistic of a draw over images.
_WEIGHTED = {
  'spearman': 'spearman',
  'pearson': 'pearson',
  'spearman_rho_a': 'rho_a',
  'cosine': 'cosine',
}


def _pairs(n: int, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
  """int32 (i, j), i < j, of the condensed entries (where keep is True)."""
  lens = np.arange(n - 1, 0, -1)
  i = np.repeat(np.arange(n - 1, dtype=np.int32), lens)
  starts = np.cumsum(np.r_[0, lens[:-1]])
  j = (np.arange(i.size) - np.repeat(starts, lens) + i + 1).astype(np.int32)
  return (i, j) if keep is None else (i[keep], j[keep])


def _expanded_index(idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
  """For sorted resampled images idx [n]: the condensed position of each
  expanded pair (p < q) in the original RDM, and where the two are copies
  of one image."""
  a, b = _pairs(len(idx), None)
  i, j = idx[a].astype(np.int64), idx[b].astype(np.int64)
  same = i == j
  pos = i * n - i * (i + 1) // 2 + (j - i - 1)
  return np.where(same, 0, pos), same


def _check(models, data, nan):
  compare_lib._check_nan(nan)
  sm = compare_lib.rdm_set(models, 'models')
  sd = compare_lib.rdm_set(data, 'data')
  size = sm.rdms[0].size
  if sd.rdms[0].size != size:
    raise InputError(
      f'model RDMs have {size} pairs, data RDMs {sd.rdms[0].size}: pass RDMs'
      ' of the same images'
    )
  n = compare_lib.triangle_size(size)
  keys = {r.key for r in (*sm.rdms, *sd.rdms)}
  if len(keys) > 1 and nan == 'same':
    raise InputError(
      'model and data RDMs miss different pairs: pass RDMs with NaN at the '
      "same pairs, or nan='drop_union' to score each subject on the pairs it"
      ' and every model measured'
    )
  return sm, sd, n


def _kept(sm, subject) -> np.ndarray | None:
  """The pairs a subject and every model measured (None: all)."""
  gone = None
  for r in (*sm.rdms, subject):
    if r.missing is not None:
      gone = r.missing.copy() if gone is None else gone | r.missing
  return None if gone is None else ~gone


def _weighted_scores(sm, sd, n, method, counts, extra=None) -> np.ndarray:
  """[B, k_models (+ extra), k_subjects] weighted statistics of the draws.

  extra: per subject, name -> [m] vectors scored beside the models (the
  ceiling pools), appended after the models in that order.
  """
  stat = _WEIGHTED[method]
  names = [f'm{k}' for k in range(len(sm.rdms))]
  out = []
  for s, subject in enumerate(sd.rdms):
    keep = _kept(sm, subject)
    i, j = _pairs(n, keep)
    vals = [r.values() for r in sm.rdms]
    preds = {
      name: v if keep is None else v[keep] for name, v in zip(names, vals)
    }
    more = {} if extra is None else extra[s]
    for name, v in more.items():
      preds[name] = v if keep is None else v[keep]
    target = subject.values()
    target = target if keep is None else target[keep]
    if i.size < 2:
      raise InputError(f'subject {sd.names[s]} shares < 2 pairs with models')
    got = _weighted.run_draws(
      _weighted.prepare_pairs(i, j, preds, target, n), counts, stats=(stat,)
    )
    out.append(np.stack([got[p][stat] for p in preds], axis=1))  # [B, K]
  return np.stack(out, axis=2)


def _expanded_scores(sm, sd, n, method, counts, nan, extra=None) -> np.ndarray:
  """As `_weighted_scores` by expanding each draw's RDMs (any method)."""
  models = [r.values().astype(np.float64) for r in sm.rdms]
  subjects = [r.values().astype(np.float64) for r in sd.rdms]
  out = np.full(
    (
      counts.shape[0],
      len(models) + (len(extra[0]) if extra else 0),
      len(subjects),
    ),
    np.nan,
  )
  for d, c in enumerate(counts):
    idx = np.repeat(np.arange(n), c)
    if np.unique(idx).size < 3:
      continue  # as rsatoolbox: a draw of fewer than 3 images is NaN
    pos, same = _expanded_index(idx, n)
    fill = 0.0 if method == 'cka' else np.nan

    def expand(v, pos=pos, same=same, fill=fill):
      e = v[pos]
      e[same] = fill
      return e

    ms = [expand(v) for v in models]
    for s, v in enumerate(subjects):
      rows = ms + [expand(e) for e in (extra[s].values() if extra else ())]
      out[d, :, s] = compare_lib.compare_rdms(
        rows, [expand(v)], method, nan=nan
      )[:, 0]
  return out


def draw_scores(
  models, data, method: str = 'spearman', counts=None, *, nan='same'
):
  """Similarity of every model to every subject on given image draws.

  Args:
    models, data: RDMs as `rdmjax.rsa.compare.compare_rdms` takes them.
    method: any comparison method or alias.
    counts: [B, n] times each image is drawn (rows of
      `rdmjax.rsa.inference.bootstrap_counts`, or np.bincount of an index
      sample as rsatoolbox's `bootstrap_sample_pattern` draws it); default
      one row of ones (the original images).
    nan: as `compare_rdms`.

  Returns:
    [B, k_models, k_subjects] float64: row b equals rsatoolbox's
    `compare(model.subsample_pattern('index', idx), data.subsample_pattern(
    'index', idx), method)` for the sample idx with counts[b].
  """
  method = compare_lib.method_name(method)
  sm, sd, n = _check(models, data, nan)
  counts = np.ones((1, n), np.int32) if counts is None else np.asarray(counts)
  if counts.ndim != 2 or counts.shape[1] != n:
    raise InputError(f'counts shape {counts.shape}: pass [B, {n}]')
  return _scores(sm, sd, n, method, counts.astype(np.int32), nan)


def _scores(sm, sd, n, method, counts, nan, extra=None):
  if method in _WEIGHTED:
    return _weighted_scores(sm, sd, n, method, counts, extra)
  return _expanded_scores(sm, sd, n, method, counts, nan, extra)


def _dual_variance(v_both, v_subj, v_img, k: int, n: int):
  """rsatoolbox's `_dual_bootstrap` small-sample correction."""
  a, b = k / (k - 1), n / (n - 1)
  var = a * v_subj + b * v_img - a * b * (v_both - v_subj - v_img)
  return np.minimum(np.maximum(np.maximum(var, a * v_subj), b * v_img), v_both)


def _summary(value, draws, level, sd=None, dof=None) -> dict:
  """Percentile interval of the draws, or value +- t sd where sd is given
  (the corrected dual bootstrap)."""
  out = inference.summarize(value, draws, level)
  if sd is not None:
    half = sps.t.ppf(0.5 + level / 2, dof) * sd if sd > 0 else 0.0
    out.update(sd=float(sd), low=float(value - half), high=float(value + half))
  return out


def compare_models(
  models,
  data,
  method: str = 'spearman',
  over: str = 'images',
  n_boot: int = 1000,
  seed: int = 0,
  level: float = 0.95,
  *,
  ceiling: bool = True,
  nan: str = 'same',
) -> dict:
  """Evaluate model RDMs on data RDMs with bootstrap intervals and tests.

  Args:
    models: model RDMs as `compare_rdms` takes them (a dict name -> RDM, a
      list, a stack, an rsatoolbox `RDMs`).
    data: the subjects' RDMs over the same images, the same forms.
    method: any comparison method or alias ('spearman', 'corr', 'tau-a',
      'rho-a', 'cosine', 'cka', ...).
    over: 'images', 'subjects' (at least 2) or 'both'.
    n_boot: draws.
    seed: image draws are `bootstrap_counts(n, n_boot, seed)`, subject
      draws `bootstrap_counts(k, n_boot, seed + 1)`: the same seed gives
      the same draws, so results of several calls are paired.
    level: interval coverage.
    ceiling: also the noise ceiling (needs 2 subjects) and its draws.
    nan: missing pairs, as `compare_rdms` ('same' or 'drop_union': each
      subject scored on the pairs it and every model measured).

  Returns:
    {'models': names, 'subjects': names, 'method', 'over', 'n_boot',
    'level', 'n_images', 'dof' (of the t tests: images - 1, subjects - 1,
    or the smaller for 'both'), 'n_pairs': subject -> pairs scored,
    'per_subject': [k_models, k_subjects] on the original data,
    'scores': model -> {'value' (mean over subjects), 'low', 'high', 'sd',
    'samples', 'p_zero' (one-sided t test of > 0), 'p_below_ceiling'
    (one-sided t test of < the lower bound)},
    'noise_ceiling': {'lower', 'upper'} each {'value', 'low', 'high', 'sd',
    'samples'} (None without a ceiling),
    'differences': list of {'a', 'b', 'value' (a - b), 'low', 'high', 'sd',
    'p' (two-sided t test, as rsatoolbox's default)} for every pair of
    models, 'diff_p': [k, k] those p (NaN on the diagonal)}.
  """
  method = compare_lib.method_name(method)
  if over not in OVER:
    raise InputError(f'over={over!r} unknown: use one of {OVER}')
  if n_boot < 2:
    raise InputError(f'n_boot={n_boot}: need at least 2 draws')
  sm, sd, n = _check(models, data, nan)
  size = sm.rdms[0].size
  k_m, k_s = len(sm.rdms), len(sd.rdms)
  if over != 'images' and k_s < 2:
    raise InputError(f'{k_s} subject(s): a bootstrap over subjects needs 2')
  ceiling = ceiling and k_s >= 2
  extra = None
  nc = None
  if ceiling:
    nc = group.noise_ceiling(data, method, nan=nan)
    v = np.stack([r.values() for r in sd.rdms]).astype(np.float64)
    pool_all, pool_others = group.loo_pools(group._pool_parts(v, method))
    extra = [{'upper': pool_all, 'lower': pool_others(s)} for s in range(k_s)]
  ones = np.ones((1, n), np.int32)
  if over == 'subjects':
    img = ones
  else:
    img = np.concatenate([ones, inference.bootstrap_counts(n, n_boot, seed)])
  scores = _scores(sm, sd, n, method, img, nan, extra)  # [1 + B?, K, S]
  if over == 'images':
    u = np.ones((n_boot, k_s))
  else:
    u = inference.bootstrap_counts(k_s, n_boot, seed + 1).astype(np.float64)
  orig = scores[0]  # [K, S]: the original images (float32 sums for the
  # weighted statistics); the values reported are float64 on the host.
  if nan == 'same':
    orig = orig.copy()
    orig[:k_m] = compare_lib._compare_sets(sm.rdms, sd.rdms, method, nan)
  value = orig.mean(1)  # [K]
  if ceiling:
    value[k_m], value[k_m + 1] = nc['upper'], nc['lower']
  if over == 'images':
    draws = {'main': np.nanmean(scores[1:], axis=2)}
  elif over == 'subjects':
    draws = {'main': u @ orig.T / k_s}  # [B, K]
  else:
    both = np.einsum('bks,bs->bk', scores[1:], u) / k_s
    draws = {
      'main': both,
      'subjects': u @ orig.T / k_s,
      'images': np.nanmean(scores[1:], axis=2),
    }
  dof = {'images': n - 1, 'subjects': k_s - 1, 'both': min(n, k_s) - 1}[over]

  def sd_of(f):
    """sd of a linear function f of the [B, K] draws, corrected for 'both'."""
    d = {key: f(x) for key, x in draws.items()}
    if over != 'both':
      return None, d['main']
    var = [np.nanvar(d[key], ddof=1) for key in ('main', 'subjects', 'images')]
    return math.sqrt(max(_dual_variance(*var, k_s, n), 0.0)), d['main']

  names = list(sm.names)
  out_scores = {}
  lower = value[k_m + 1] if ceiling else None  # models, 'upper', 'lower'
  for a, name in enumerate(names):
    s_a, d_a = sd_of(lambda x, a=a: x[:, a])
    summ = _summary(value[a], d_a, level, s_a, dof)
    t_sd = summ['sd']
    summ['p_zero'] = (
      float(sps.t.sf(value[a] / t_sd, dof)) if t_sd > 0 else float('nan')
    )
    if ceiling:
      s_c, d_c = sd_of(lambda x, a=a: x[:, a] - x[:, k_m + 1])
      sd_c = s_c if s_c is not None else np.nanstd(d_c, ddof=1)
      gap = value[a] - lower
      summ['p_below_ceiling'] = (
        float(sps.t.cdf(gap / sd_c, dof)) if sd_c > 0 else float('nan')
      )
    out_scores[name] = summ
  bounds = None
  if ceiling:
    bounds = {}
    for key, col in (('upper', k_m), ('lower', k_m + 1)):
      s_b, d_b = sd_of(lambda x, col=col: x[:, col])
      summ = _summary(value[col], d_b, level, s_b, dof)
      bounds[key] = summ
  diffs, diff_p = [], np.full((k_m, k_m), np.nan)
  for a in range(k_m):
    for b in range(a + 1, k_m):
      s_d, d_d = sd_of(lambda x, a=a, b=b: x[:, a] - x[:, b])
      summ = _summary(value[a] - value[b], d_d, level, s_d, dof)
      sdd = summ['sd']
      p = (
        float(2 * sps.t.sf(abs(summ['value']) / sdd, dof))
        if sdd > 0
        else float('nan')
      )
      diff_p[a, b] = diff_p[b, a] = p
      diffs.append({'a': names[a], 'b': names[b], **summ, 'p': p})
  return {
    'models': names,
    'subjects': list(sd.names),
    'method': method,
    'over': over,
    'n_boot': int(n_boot),
    'level': level,
    'n_images': n,
    'dof': dof,
    'n_pairs': {
      name: int(size if keep is None else keep.sum())
      for name, keep in zip(sd.names, (_kept(sm, r) for r in sd.rdms))
    },
    'per_subject': orig[:k_m],
    'scores': out_scores,
    'noise_ceiling': bounds,
    'differences': diffs,
    'diff_p': diff_p,
  }
