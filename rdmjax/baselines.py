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


def split_rsa(
  x: np.ndarray,
  y: np.ndarray,
  idx: np.ndarray,
  x_metric: str = 'correlation',
  y_metric: str = 'correlation',
) -> float:
  """Spearman between the RDMs of x and y over every pair of images idx.

  The upper triangles of two RDMs from `rdmjax.kernels` (one matrix product
  each, not a per-pair gather).

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
