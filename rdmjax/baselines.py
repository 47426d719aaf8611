"""What a trained pair model must beat, and the best it can reach.

- `zero_shot_rsa`: no training at all: rank-correlate the embeddings' own
  dissimilarities (1 - Pearson between two images' embeddings) with the
  response dissimilarities, over the same held-out pairs the model is
  scored on (classic RSA, as THINGSvision does).
- `ceiling_rsa`: for the synthetic subject, whose noiseless responses are
  known: Spearman between the targets from noiseless responses and those
  from the saved (noisy) ones on the same pairs. No model of the noisy
  targets can expect to rank-correlate better with them than their own
  expectation does, so test Spearman is reported as a fraction of this.

Host numpy in float64: the held-out splits are small (a few hundred to a
thousand images).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from rdmjax.errors import InputError


def dissimilarity(
  x: np.ndarray, i: np.ndarray, j: np.ndarray, metric: str
) -> np.ndarray:
  """Dissimilarity of rows i and j of x: [P] f64.

  Args:
    x: [n, d] rows (responses or embeddings).
    i: [P] row indices.
    j: [P] row indices.
    metric: 'correlation' (1 - Pearson r) or 'euclidean'.
  """
  a = np.asarray(x, np.float64)[np.asarray(i)]
  b = np.asarray(x, np.float64)[np.asarray(j)]
  if metric == 'correlation':
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    num = np.sum(a * b, 1)
    return 1.0 - num / np.sqrt(np.sum(a * a, 1) * np.sum(b * b, 1))
  if metric == 'euclidean':
    return np.sqrt(np.sum(np.square(a - b), 1))
  raise InputError(f'metric {metric!r} unknown; use correlation or euclidean')


def all_pairs(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Every unordered pair of the given images: (i, j) [m(m-1)/2] int."""
  a, b = np.triu_indices(len(idx), k=1)
  idx = np.asarray(idx)
  return idx[a], idx[b]


def zero_shot_rsa(
  emb: np.ndarray,
  z: np.ndarray,
  pairs: tuple[np.ndarray, np.ndarray],
  metric: str = 'correlation',
  emb_metric: str = 'correlation',
) -> float:
  """Spearman of embedding vs response dissimilarity on the given pairs.

  Args:
    emb: [n_images, d] embeddings.
    z: [n_images, v] standardised responses.
    pairs: (i [P], j [P]) image indices.
    metric: the target's metric (as pairs.metric).
    emb_metric: the embeddings' metric.

  Returns:
    Spearman rho (scipy).
  """
  i, j = pairs
  rho = stats.spearmanr(
    dissimilarity(emb, i, j, emb_metric), dissimilarity(z, i, j, metric)
  )[0]
  return float(rho)


def ceiling_rsa(
  z_noiseless: np.ndarray,
  z: np.ndarray,
  pairs: tuple[np.ndarray, np.ndarray],
  metric: str = 'correlation',
) -> float:
  """Spearman of noiseless vs noisy targets on the given pairs (the ceiling).

  Args:
    z_noiseless: [n_images, v] noiseless responses, standardised with
      statistics of their own training rows (the same rows and ROI as z).
    z: [n_images, v] standardised (noisy) responses.
    pairs: (i [P], j [P]).
    metric: the target's metric.
  """
  i, j = pairs
  rho = stats.spearmanr(
    dissimilarity(z_noiseless, i, j, metric), dissimilarity(z, i, j, metric)
  )[0]
  return float(rho)
