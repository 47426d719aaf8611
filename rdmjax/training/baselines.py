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

RDMs come from `rdmjax.rsa.rdm` over the held-out images (a few hundred to
a thousand): one matrix product per RDM, never a per-pair row gather.
"""

from __future__ import annotations

import numpy as np

from rdmjax.rsa import encoding, reweighted
from rdmjax.rsa import rdm as rdm_lib


def split_rsa(
  x: np.ndarray,
  y: np.ndarray,
  idx: np.ndarray,
  x_metric: str = 'correlation',
  y_metric: str = 'correlation',
) -> float:
  """Spearman between the RDMs of x and y over every pair of images idx.

  The upper triangles of two RDMs from `rdmjax.rsa.rdm` (one matrix product
  each, not a per-pair gather).

  Args:
    x: [n_images, d] rows (embeddings or responses).
    y: [n_images, v] rows (responses).
    idx: [m] image indices (a held-out split).
    x_metric: x's metric (an RDM metric of rdmjax.rsa.rdm).
    y_metric: y's metric (the target's, as pairs.metric).
  """
  idx = np.asarray(idx)
  rx = rdm_lib.rdm(np.asarray(x)[idx], x_metric)
  ry = rdm_lib.rdm(np.asarray(y)[idx], y_metric)
  return rdm_lib.compare_rdms(rx, ry, 'spearman')


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


class _Rows:
  """z[rows] read a column block at a time (what `encoding.fit_ridge`
  reads), with no [len(rows), v] copy of the responses."""

  def __init__(self, z: np.ndarray, rows: np.ndarray):
    self.z, self.rows = z, np.asarray(rows)
    self.shape, self.ndim = (len(self.rows), z.shape[1]), 2

  def __getitem__(self, key):
    r, c = key
    assert r == slice(None), 'read column blocks only'
    return self.z[self.rows, c]


def _gather(rdm, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.asarray(rdm)[a, b].astype(np.float32)


# The trained model's competitors on a run's test pairs (see test_pairs).
BASELINES = ('ceiling', 'zero_shot', 'ridge', 'reweighted')


def test_pairs(
  data, images, i, j, metric: str, seed: int = 0, fits: dict | None = None
) -> dict:
  """Every baseline's dissimilarities on exactly a run's scored pairs.

  Each is one RDM over the scored images (a few hundred to a thousand), its
  entries gathered at the pairs:
  - 'ceiling' (synthetic subject): the targets from the noiseless
    responses;
  - 'zero_shot': 1 - Pearson of the embeddings (classic RSA, untrained);
  - 'ridge': an encoding model, embeddings -> every vertex, fitted on the
    run's training images (penalty by leave-one-out on them,
    `encoding.fit_ridge`); the target metric of its predicted responses
    (Net2Brain's veRSA, the Algonauts devkit's encoding baseline);
  - 'reweighted': feature-reweighted RSA, one non-negative weight per
    embedding dimension fitted on training pairs (`encoding`).

  Args:
    data: the run's `train_data.Data` (z, emb, z_noiseless, split).
    images: [m] sorted image indices of the scored pairs.
    i, j: [P] image indices (global) of the scored pairs.
    metric: the target metric.
    seed: the reweighting's training pairs.
    fits: a dict to receive the fitted 'ridge' (for its per-vertex
      accuracy, `encoding_accuracy`).

  Returns:
    name -> [P] f32, for the baselines the run has data for.
  """
  a, b = np.searchsorted(images, i), np.searchsorted(images, j)
  out = {}
  if data.z_noiseless is not None:
    out['ceiling'] = _gather(
      rdm_lib.rdm(data.z_noiseless[images], metric), a, b
    )
  if data.emb is None:
    return out
  emb = np.asarray(data.emb, np.float32)
  out['zero_shot'] = _gather(rdm_lib.rdm(emb[images], 'correlation'), a, b)
  train = np.asarray(data.split['train'])
  fit = encoding.fit_ridge(emb[train], _Rows(data.z, train), dtype='float32')
  if fits is not None:
    fits['ridge'] = fit
  out['ridge'] = _gather(rdm_lib.rdm(fit.predict(emb[images]), metric), a, b)
  rw = _fit_reweighted(emb, data.z, train, metric, seed)
  out['reweighted'] = _gather(reweighted.reweighted_rdm(emb[images], rw), a, b)
  return out


def _fit_reweighted(
  emb, z, train, metric, seed, n_images=2000, n_pairs=200_000
):
  """Reweighting fitted on up to n_pairs pairs of up to n_images training
  images (their targets: one RDM)."""
  rng = np.random.default_rng([seed, 0x4E77])
  sub = np.sort(rng.choice(train, min(len(train), n_images), replace=False))
  target = np.asarray(rdm_lib.rdm(z[sub], metric))
  a, b = np.triu_indices(sub.size, 1)
  if a.size > n_pairs:
    keep = np.sort(rng.choice(a.size, n_pairs, replace=False))
    a, b = a[keep], b[keep]
  return reweighted.fit_reweighted(emb[sub], a, b, target[a, b])


def encoding_accuracy(data, fit, rows) -> dict:
  """The ridge encoding model's accuracy per vertex on test images, as the
  Algonauts devkit scores it: Pearson r of predicted and measured responses
  per vertex (median, mean), and where the data has a noise ceiling for
  these images (official test images), 100 r^2 / NC per vertex.

  Args:
    data: the run's `train_data.Data` (z, emb, noise_ceiling).
    fit: `encoding.fit_ridge` on the run's training images.
    rows: the test images' rows.
  """
  rows = np.asarray(rows)
  pred = fit.predict(np.asarray(data.emb, np.float32)[rows])
  r = encoding.vertex_correlation(pred, data.z[rows])
  out = dict(
    r_median=float(np.nanmedian(r)),
    r_mean=float(np.nanmean(r)),
    n_vertices=int(r.size),
    n_images=int(rows.size),
  )
  nc = getattr(data, 'noise_ceiling', None)
  if nc is not None:
    score = encoding.noise_normalised(r, nc)
    out.update(
      nc_score_median=float(np.nanmedian(score)),
      nc_score_mean=float(np.nanmean(score)),
    )
  return out
