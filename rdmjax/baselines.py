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

RDMs come from `rdmjax.kernels` over the held-out images (a few hundred to
a thousand): one matrix product per RDM, never a per-pair row gather.
"""

from __future__ import annotations

import numpy as np

from rdmjax import kernels
from rdmjax.errors import InputError


def dissimilarity(
  x: np.ndarray,
  i: np.ndarray,
  j: np.ndarray,
  metric: str,
  max_bytes: int = 1 << 28,
) -> np.ndarray:
  """Dissimilarity of rows i and j of x: [P] f64 (a float64 reference).

  Pairs are gathered in chunks of at most `max_bytes` of rows, so a real
  subject (39548 vertices) never gathers P x d at once.

  Args:
    x: [n, d] rows (responses or embeddings).
    i: [P] row indices.
    j: [P] row indices.
    metric: 'correlation' (1 - Pearson r) or 'euclidean'.
  """
  if metric not in ('correlation', 'euclidean'):
    raise InputError(f'metric {metric!r} unknown; use correlation or euclidean')
  x = np.asarray(x)
  i, j = np.asarray(i), np.asarray(j)
  step = max(1, max_bytes // (16 * x.shape[1]))
  out = np.empty(len(i), np.float64)
  for s in range(0, len(i), step):
    a = x[i[s : s + step]].astype(np.float64)
    b = x[j[s : s + step]].astype(np.float64)
    if metric == 'correlation':
      a -= a.mean(1, keepdims=True)
      b -= b.mean(1, keepdims=True)
      num = np.sum(a * b, 1)
      d = 1.0 - num / np.sqrt(np.sum(a * a, 1) * np.sum(b * b, 1))
    else:
      d = np.sqrt(np.sum(np.square(a - b), 1))
    out[s : s + step] = d
  return out


def all_pairs(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Every unordered pair of the given images: (i, j) [m(m-1)/2] int."""
  a, b = np.triu_indices(len(idx), k=1)
  idx = np.asarray(idx)
  return idx[a], idx[b]


def split_rsa(
  x: np.ndarray,
  y: np.ndarray,
  idx: np.ndarray,
  x_metric: str = 'correlation',
  y_metric: str = 'correlation',
) -> float:
  """Spearman between the RDMs of x and y over every pair of images idx.

  The pairs are those of `all_pairs(idx)`: the upper triangles of two RDMs
  from `rdmjax.kernels` (one matrix product each, not a per-pair gather).

  Args:
    x: [n_images, d] rows (embeddings or responses).
    y: [n_images, v] rows (responses).
    idx: [m] image indices (a held-out split).
    x_metric: x's metric (an RDM metric of rdmjax.kernels).
    y_metric: y's metric (the target's, as pairs.metric).
  """
  idx = np.asarray(idx)
  rx = kernels.rdm(np.asarray(x)[idx], x_metric)
  ry = kernels.rdm(np.asarray(y)[idx], y_metric)
  return kernels.compare_rdms(rx, ry, 'spearman')


def zero_shot_rsa(emb, z, idx, metric: str = 'correlation') -> float:
  """Embedding vs response RDM (Spearman) over every pair of images idx.

  Args:
    emb: [n_images, d] embeddings (their RDM: 1 - Pearson).
    z: [n_images, v] standardised responses.
    idx: [m] image indices.
    metric: the target's metric (as pairs.metric).
  """
  return split_rsa(emb, z, idx, 'correlation', metric)


def ceiling_rsa(z_noiseless, z, idx, metric: str = 'correlation') -> float:
  """Noiseless vs noisy target RDM (Spearman) over every pair of idx.

  Args:
    z_noiseless: [n_images, v] noiseless responses, standardised with
      statistics of their own training rows (the same rows and ROI as z).
    z: [n_images, v] standardised (noisy) responses.
    idx: [m] image indices.
    metric: the target's metric.
  """
  return split_rsa(z_noiseless, z, idx, metric, metric)
