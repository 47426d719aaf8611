"""Intervals and tests for scores: bootstrap over images, permutation tests.

Bootstrap over images, as rsatoolbox's `bootstrap_sample_pattern`: a draw
resamples the n images with replacement, image k coming c_k times
(multinomial counts, `bootstrap_counts`). A scored pair (i, j) then comes
c_i * c_j times; pairs of two copies of one image are left out like
self-pairs (rsatoolbox sets them to NaN). So every draw is a weighted
statistic of the original pairs with integer weights w = c[i] * c[j], and
the pairs need not be all pairs of the images (a hashed subset works alike):
Spearman, Pearson and R^2 per draw are `weighted_pair_stats`
(`rdmjax.rsa._weighted`: float32 on the device, within 1e-6 of a float64
reference). 5e5 pairs of 1000 images, a model and a ceiling, 1000 draws:
19-31 s on 2 busy CPU cores. Percentile intervals ignore NaN draws (a draw
with no pair, or a constant RDM).

Permutation test (`permutation_test`): image labels of one RDM are permuted
(rows and columns together). Its ranks as a multiset do not change, so the
ranked square matrix is permuted directly: a permutation is a gather and a
dot product with the other RDM's centred ranks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from scipy import stats as sps

from rdmjax.errors import InputError
from rdmjax.rsa._weighted import PAIR_STATS as PAIR_STATS
from rdmjax.rsa._weighted import prepare_pairs, run_draws
from rdmjax.rsa._weighted import weighted_pair_stats as weighted_pair_stats
from rdmjax.rsa.compare import method_name

__all__ = [
  'bootstrap_counts',
  'bootstrap_pair_scores',
  'difference_interval',
  'interval',
  'paired_difference',
  'permutation_test',
  'summarize',
  'weighted_pair_stats',
]

_CHUNK = 32  # permutations per compiled call


def bootstrap_counts(n_images: int, n_boot: int, seed: int = 0) -> np.ndarray:
  """Times each image is drawn when n_images are resampled with replacement.

  Args:
    n_images: size of the image set.
    n_boot: number of draws.
    seed: numpy `default_rng` seed; the same seed gives the same draws, so
      conditions scored on the same images are paired.

  Returns:
    [n_boot, n_images] int32; each row sums to n_images.
  """
  if n_images < 1 or n_boot < 1:
    raise InputError(f'n_images={n_images}, n_boot={n_boot}: need >= 1')
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, n_images, (n_boot, n_images))
  idx += np.arange(n_boot)[:, None] * n_images
  flat = np.bincount(idx.ravel(), minlength=n_boot * n_images)
  return flat.reshape(n_boot, n_images).astype(np.int32)


def interval(samples, level: float = 0.95) -> tuple[float, float]:
  """Percentile interval of bootstrap samples (NaN draws ignored).

  Args:
    samples: [n] draws of a statistic.
    level: coverage, e.g. 0.95 for the 2.5% and 97.5% percentiles.

  Returns:
    (low, high); NaN if no draw is finite.
  """
  if not 0 < level < 1:
    raise InputError(f'level={level}: pass a coverage in (0, 1)')
  s = np.asarray(samples, np.float64).ravel()
  s = s[np.isfinite(s)]
  if s.size == 0:
    return float('nan'), float('nan')
  a = (1 - level) / 2
  low, high = np.quantile(s, [a, 1 - a])
  return float(low), float(high)


def summarize(value, samples, level: float = 0.95) -> dict:
  """{'value', 'low', 'high', 'sd', 'samples'} of a statistic.

  value: the statistic on the original data; samples: its [n] draws.
  'sd' is the standard deviation of the finite draws (ddof=1); 'samples'
  the draws as float64 (NaN where undefined).
  """
  s = np.asarray(samples, np.float64).ravel()
  low, high = interval(s, level)
  fin = s[np.isfinite(s)]
  sd = float(np.std(fin, ddof=1)) if fin.size > 1 else float('nan')
  return {
    'value': float(value),
    'low': low,
    'high': high,
    'sd': sd,
    'samples': s,
  }


def difference_interval(
  samples_a, samples_b, level: float = 0.95, value: float | None = None
) -> dict:
  """Interval of a - b from two independent bootstraps of equal length.

  For two conditions scored on different pairs of different images (e.g.
  leaked vs image-disjoint), each bootstrapped on its own images: draw k of
  a minus draw k of b is a draw of the difference, the bootstraps being
  independent. (Conditions on the same images: `paired_difference`.)

  Args:
    samples_a: [n] draws of condition a (e.g. fraction of ceiling).
    samples_b: [n] draws of condition b.
    level: interval coverage.
    value: the difference on the original data (NaN if not given).

  Returns:
    `summarize` of the per-draw differences.
  """
  a = np.asarray(samples_a, np.float64).ravel()
  b = np.asarray(samples_b, np.float64).ravel()
  if a.shape != b.shape:
    raise InputError(
      f'{a.size} and {b.size} draws: pass bootstraps of the same length'
    )
  return summarize(float('nan') if value is None else value, a - b, level)


def paired_difference(
  scores: dict, a: str, b: str, stat: str = 'spearman', level: float = 0.95
) -> dict:
  """a - b per draw, for two predictions of one `bootstrap_pair_scores`.

  Both were scored on the same pairs with the same draws, so the per-draw
  difference carries their correlation.

  Args:
    scores: a `bootstrap_pair_scores` result.
    a, b: names of two predictions in it.
    stat: 'spearman', 'pearson', 'r2' or 'fraction_of_ceiling'.
    level: interval coverage.

  Returns:
    `summarize` of the differences ('value' from the original data).
  """
  for name in (a, b):
    if name not in scores or stat not in scores[name]:
      raise InputError(f'no {stat!r} for {name!r}: have {sorted(scores)}')
  sa, sb = scores[a][stat], scores[b][stat]
  return summarize(
    sa['value'] - sb['value'], sa['samples'] - sb['samples'], level
  )


def bootstrap_pair_scores(
  i,
  j,
  preds: dict,
  target,
  n_images: int,
  n_boot: int = 1000,
  seed: int = 0,
  ceiling: str | None = None,
  level: float = 0.95,
) -> dict[str, dict[str, dict]]:
  """Bootstrap over images of the pair scores of every prediction.

  Args:
    i, j: [P] int pair images, 0 <= i < j < n_images; any subset of the
      pairs of the n_images images (remap global ids with np.unique).
    preds: name -> [P] predictions (models, baselines, a ceiling).
    target: [P] true dissimilarities.
    n_images: the image set resampled (rsatoolbox: the patterns).
    n_boot: number of draws.
    seed: `bootstrap_counts` seed: the same seed and n_images, the same
      draws (paired conditions on the same images).
    ceiling: name of the prediction that is the ceiling (e.g. noiseless
      targets): every other one gets 'fraction_of_ceiling', its Spearman
      over the ceiling's in the same draw.
    level: interval coverage.

  Returns:
    name -> stat -> `summarize` dict {'value', 'low', 'high', 'sd',
    'samples' [n_boot]}, stat of 'spearman', 'pearson', 'r2' and, with a
    ceiling, 'fraction_of_ceiling'. 'value' is on the original pairs.
  """
  if ceiling is not None and ceiling not in preds:
    raise InputError(f'ceiling {ceiling!r} is not among {sorted(preds)}')
  # Row 0, all ones, is the original data: one compiled shape for both.
  counts = np.concatenate(
    [np.ones((1, n_images), np.int32), bootstrap_counts(n_images, n_boot, seed)]
  )
  got = run_draws(prepare_pairs(i, j, preds, target, n_images), counts)
  out = {}
  for name in preds:
    out[name] = {
      s: summarize(got[name][s][0], got[name][s][1:], level) for s in PAIR_STATS
    }
  if ceiling is not None:
    ref = got[ceiling]['spearman']
    with np.errstate(divide='ignore', invalid='ignore'):
      for name in preds:
        if name != ceiling:
          frac = got[name]['spearman'] / ref
          out[name]['fraction_of_ceiling'] = summarize(frac[0], frac[1:], level)
  return out


def _permutations(n: int, n_perm: int, seed: int) -> np.ndarray:
  """[n_perm, n] int32 permutations of range(n), numpy default_rng(seed)."""
  rng = np.random.default_rng(seed)
  return rng.permuted(
    np.tile(np.arange(n, dtype=np.int32), (n_perm, 1)), axis=1
  )


@jax.jit
def _perm_dots(a_sq: jax.Array, b_up: jax.Array, perms, inverses):
  """sum_ij a_sq[p_i, p_j] b_up[i, j] per permutation p (inverse q).

  Computed as sum_ik a_sq[p_i, k] b_up[i, q_k] (k = p_j): a row gather and
  a column gather, faster on a CPU than gathering a_sq twice.
  """

  def one(pq):
    p, q = pq
    return (a_sq[p] * jnp.take(b_up, q, axis=1)).sum(1).sum()

  return lax.map(one, (perms, inverses))


def permutation_test(
  rdm_a, rdm_b, n_perm: int = 1000, seed: int = 0, method: str = 'spearman'
) -> dict:
  """Permutation test of an RSA score: image labels of rdm_a permuted.

  Each permutation reorders rdm_a's rows and columns together and
  recomputes the correlation of the upper triangles.
  p = (1 + #{null >= observed}) / (1 + n_perm): one-sided, never 0.

  Args:
    rdm_a: [n, n] symmetric RDM (its upper triangle is read).
    rdm_b: [n, n] RDM of the same images.
    n_perm: number of permutations.
    seed: numpy `default_rng` seed of the permutations.
    method: 'spearman' (average ranks for ties) or 'pearson' (alias
      'corr').

  Returns:
    {'value': the observed correlation (float64), 'p': the p-value,
    'null': [n_perm] float64 correlations of the permutations (float32
    sums), 'n_perm', 'method'}. A constant RDM gives NaN value and p.
  """
  method = method_name(method)
  if method not in ('spearman', 'pearson'):
    raise InputError(
      f'method {method!r}: a permutation test takes spearman or pearson '
      "('corr'); rdmjax.rsa.evaluation.compare_models bootstraps any method"
    )
  a, b = np.asarray(rdm_a, np.float64), np.asarray(rdm_b, np.float64)
  if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape != b.shape:
    raise InputError(
      f'RDM shapes {a.shape} and {b.shape}: pass two square [n, n] RDMs of '
      'the same images'
    )
  if n_perm < 1:
    raise InputError(f'n_perm={n_perm}: need >= 1')
  n = a.shape[0]
  iu = np.triu_indices(n, 1)
  va, vb = a[iu], b[iu]
  if method == 'spearman':
    va, vb = sps.rankdata(va), sps.rankdata(vb)
  va, vb = va - va.mean(), vb - vb.mean()
  norm = float(np.sqrt(va @ va) * np.sqrt(vb @ vb))
  # Rescaled to max |v| = 1 for float32 (r is scale-free).
  sa = np.abs(va).max() or 1.0
  sb = np.abs(vb).max() or 1.0
  a_sq = np.zeros((n, n), np.float32)
  a_sq[iu] = va / sa
  a_sq += a_sq.T  # the permuted upper triangle reads both halves
  b_up = np.zeros((n, n), np.float32)
  b_up[iu] = vb / sb
  # Row 0, the identity, gives the observed value the way the null's are
  # computed: equal values compare equal.
  perms = np.concatenate(
    [np.arange(n, dtype=np.int32)[None], _permutations(n, n_perm, seed)]
  )
  inverses = np.argsort(perms, axis=1).astype(np.int32)
  # device_put, not jnp.asarray: that compiles a program per array shape.
  a_sq, b_up = jax.device_put((a_sq, b_up))
  dots = []
  for s in range(0, n_perm + 1, _CHUNK):
    part, inv = perms[s : s + _CHUNK], inverses[s : s + _CHUNK]
    real = len(part)
    if real < _CHUNK:  # one compiled shape: pad with the identity
      part = np.concatenate([part, np.tile(perms[:1], (_CHUNK - real, 1))])
      inv = np.concatenate([inv, np.tile(perms[:1], (_CHUNK - real, 1))])
    got = _perm_dots(a_sq, b_up, part, inv)
    dots.append(np.asarray(got, np.float64)[:real])
  dots = np.concatenate(dots)
  if norm > 0:
    r = dots * (sa * sb / norm)
    value = float(va @ vb / norm)  # float64
  else:  # a constant RDM
    r, value = np.full_like(dots, np.nan), float('nan')
  obs, null = r[0], r[1:]
  return {
    'value': value,
    'p': float((1 + np.sum(null >= obs)) / (1 + n_perm))
    if norm > 0
    else float('nan'),
    'null': null,
    'n_perm': int(n_perm),
    'method': method,
  }
