"""Repeat counts of the training images and how much RDMs follow them.

Algonauts training responses are means over each image's repeats inside
the training sessions: 1 to 3 trials (`../shared` layout notes). A mean of
r trials carries noise of variance sigma^2 / r per vertex, so the expected
squared Euclidean distance of two images is

  E d^2_ij = |mu_i - mu_j|^2 + S (1/r_i + 1/r_j),   S = sum_v sigma_v^2,

and Euclidean RDMs rank images by their repeat counts as much as by their
content (1 - Pearson is affected less: the noise also lowers every
correlation). This module reads NSD's counts and measures that bias (a
run finds its counts with `rdmjax.data.inputs.repeat_counts`):

- `from_expdesign(path, subject, ids)`: the counts from NSD's
  `nsd_expdesign.mat` (trials of the training sessions counted per image);
- `bias(rdm, counts, metric)`: Spearman of each image's mean dissimilarity
  with its repeat count, the mean dissimilarity per pair of counts, and
  for Euclidean metrics the same after the correction;
- the corrections: `equal_repeats(counts)` (only images of the most
  common count) and removing the fitted noise term S (1/r_i + 1/r_j) from
  squared distances (`noise_slope`, least squares over all pairs, computed
  from the RDM's row sums: no second n x n array).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as sps
from scipy.io import loadmat

from rdmjax.errors import InputError

# Sessions per subject (subj01..08); training used the first N - 3.
SESSIONS = (40, 40, 32, 30, 40, 32, 40, 30)
TRIALS_PER_SESSION = 750
FILE = 'n_repeats.npy'


def from_expdesign(
  path: str | os.PathLike, subject: str, nsd_ids: np.ndarray
) -> np.ndarray:
  """Trials per training image in the training sessions of NSD's design.

  Args:
    path: `nsd_expdesign.mat` (masterordering: [30000] 1-based indices into
      subjectim; subjectim: [8, 10000] 1-based 73k ids).
    subject: 'subj01' ... 'subj08'.
    nsd_ids: [n] 0-based NSD ids of the training images (file-name ids).

  Returns:
    [n] int counts (1..3 for Algonauts training images).
  """
  s = int(subject[-2:]) - 1
  d = loadmat(path)
  order = np.asarray(d['masterordering']).ravel().astype(np.int64) - 1
  ims = np.asarray(d['subjectim'])[s].astype(np.int64) - 1  # 0-based ids
  n_trials = (SESSIONS[s] - 3) * TRIALS_PER_SESSION
  seen = ims[order[:n_trials]]
  uniq, cnt = np.unique(seen, return_counts=True)
  pos = np.searchsorted(uniq, nsd_ids)
  pos = np.minimum(pos, len(uniq) - 1)
  found = uniq[pos] == nsd_ids
  if not found.all():
    raise InputError(
      f'{path}: {int((~found).sum())} of {len(nsd_ids)} training images of '
      f'{subject} never appear in its training sessions: is this the '
      'design file of NSD, and the right subject?'
    )
  return cnt[pos]


def equal_repeats(c: np.ndarray) -> np.ndarray:
  """Indices of the images with the most common repeat count."""
  values, n = np.unique(c, return_counts=True)
  return np.flatnonzero(c == values[np.argmax(n)])


def _pair_sums(a: np.ndarray, rows: np.ndarray) -> tuple[float, ...]:
  """Over pairs i < j, u_ij = a_i + a_j, y_ij: sum u, sum u^2, sum y,
  sum u y, from a [n] and the row sums of a symmetric y (zero diagonal)."""
  n = a.size
  su = (n - 1) * a.sum()
  suu = (n - 2) * np.square(a).sum() + a.sum() ** 2
  return su, suu, rows.sum() / 2, float(a @ rows)


def noise_slope(sq_rows: np.ndarray, c: np.ndarray) -> float:
  """S of d^2_ij ~ b + S (1/r_i + 1/r_j), least squares over all pairs,
  from the row sums of the squared-distance RDM."""
  a = 1.0 / np.asarray(c, np.float64)
  n = a.size
  m = n * (n - 1) / 2
  su, suu, sy, suy = _pair_sums(a, np.asarray(sq_rows, np.float64))
  return float((suy - su * sy / m) / (suu - su**2 / m))


@jax.jit
def _sums(r, onehot):
  """One program for every device sum of `bias`, whatever the metric: the
  row sums of r [n, n] and of r^2, and the sums per pair of counts [k, k]
  (onehot: [n, k])."""
  by_count = onehot.T @ (r @ onehot)
  return jnp.sum(r, 1), by_count, jnp.sum(jnp.square(r), 1)


def _by_count(sums: np.ndarray, onehot: np.ndarray, values) -> dict:
  """Mean dissimilarity of the pairs of each count combination, from the
  sums per pair of counts."""
  out = {}
  size = np.outer(onehot.sum(0), onehot.sum(0)) - np.diag(onehot.sum(0))
  for x, rx in enumerate(values):
    for y, ry in enumerate(values):
      if x <= y and size[x, y] > 0:
        out[f'{rx}-{ry}'] = float(sums[x, y] / size[x, y])
  return out


def bias(rdm, c: np.ndarray, metric: str) -> dict | None:
  """How strongly an RDM follows repeat counts.

  Args:
    rdm: [n, n] RDM of the training images (device or host).
    c: [n] repeat counts.
    metric: its metric (Euclidean ones also get the corrected figure).

  Returns:
    {'spearman': Spearman of each image's mean dissimilarity with its
    count, 'by_count': mean dissimilarity per count pair ('1-3': ...), and
    for euclidean/sqeuclidean 'noise_slope' S and 'spearman_corrected':
    the same Spearman after subtracting S (1/r_i + 1/r_j) from squared
    distances}; None when every image has the same count.
  """
  n = rdm.shape[0]
  c = np.asarray(c)
  if c.shape != (n,):
    raise InputError(f'{c.shape} repeat counts for an RDM of {n} images')
  values = np.unique(c)
  if values.size < 2:
    return None
  if not isinstance(rdm, jax.Array) or rdm.dtype != jnp.float32:
    rdm = jax.device_put(np.asarray(rdm, np.float32))
  onehot = (c[:, None] == values[None]).astype(np.float32)
  rows, by_count, sq_rows = jax.device_get(_sums(rdm, onehot))
  if metric == 'sqeuclidean':
    sq_rows = rows  # the RDM holds the squares
  rows = np.asarray(rows, np.float64)
  out = {
    'spearman': float(sps.spearmanr(rows / (n - 1), c).statistic),
    'by_count': _by_count(np.asarray(by_count, np.float64), onehot, values),
  }
  if metric in ('euclidean', 'sqeuclidean'):
    sq_rows = np.asarray(sq_rows, np.float64)
    s = noise_slope(sq_rows, c)
    a = 1.0 / c
    # Row means of d^2 - S (a_i + a_j) over j != i.
    corrected = (sq_rows - s * ((n - 1) * a + (a.sum() - a))) / (n - 1)
    out['noise_slope'] = s
    out['spearman_corrected'] = float(sps.spearmanr(corrected, c).statistic)
  return out
