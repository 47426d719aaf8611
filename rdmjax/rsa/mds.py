"""A map of an RDM: classical (Torgerson) multidimensional scaling.

`mds(rdm, dim)` places the n images in dim dimensions from the top
eigenvectors of B = -1/2 H D^2 H (H = I - 11^T / n): for Euclidean
distances D, B is the Gram matrix of the centred points and the map recovers
them up to rotation, reflection and translation. No SMACOF iterations
follow: classical MDS is deterministic and exact for Euclidean distances,
while SMACOF (sklearn.manifold.MDS, which can start from this map) lowers
the stress only for non-Euclidean RDMs, with local minima and O(n^2) work
per iteration. Negative eigenvalues (non-Euclidean RDMs) give zero
coordinates; `negative_share` says how much of B they hold.

Of the RDM metrics only 'euclidean' is a distance as it stands: 1 - r
(correlation), 1 - cos (cosine) and 'sqeuclidean' are squared Euclidean
distances (1 - r = |z_i - z_j|^2 / 2 for the centred, unit-norm patterns
z; 1 - cos the same for unit-norm patterns), so classical MDS must take
their square root (`as_distances`): B of sqrt(1 - r) is positive
semi-definite (negative-eigenvalue share ~1e-16 in float64), while B of
1 - r itself has a sizeable share of its eigenvalue mass negative (25-30%
for RDMs of random patterns; 1.8-23% on fMRI RDMs), which the map drops.
`mds_figure` (`rdmjax.report.mds`) draws the map coloured by a label.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg
from scipy.sparse import linalg as splinalg

from rdmjax.errors import InputError

# Up to this many images a dense symmetric eigendecomposition (O(n^3));
# above it, the top eigenvectors by Lanczos (ARPACK, O(n^2) per step).
_DENSE_MAX = 2000


def _square(rdm) -> np.ndarray:
  """[n, n] or condensed RDM -> float64 [n, n] from its upper triangle
  (the diagonal set to 0 and the lower triangle mirrored)."""
  r = np.asarray(rdm, np.float64)
  if r.ndim == 1:
    n = (1 + math.isqrt(1 + 8 * r.shape[0])) // 2
    if n * (n - 1) // 2 != r.shape[0]:
      raise InputError(f'{r.shape[0]} entries are no upper triangle n(n-1)/2')
    v = r
  elif r.ndim == 2 and r.shape[0] == r.shape[1]:
    n = r.shape[0]
    v = r[np.triu_indices(n, 1)]
  else:
    raise InputError(f'RDM shape {r.shape}: pass [n, n] or condensed [m]')
  bad = np.count_nonzero(~np.isfinite(v))
  if bad:
    raise InputError(
      f'RDM has {bad} non-finite entries (NaN or inf) of {v.size} in its'
      ' upper triangle: MDS needs finite dissimilarities (drop the images'
      ' or responses that make them)'
    )
  d = np.zeros((n, n))
  d[np.triu_indices(n, 1)] = v
  return d + d.T


# The root classical MDS takes of each metric's RDM, and how to say so.
_ROOTED = {
  'correlation': 'sqrt(1 - r)',
  'cosine': 'sqrt(1 - cos)',
  'sqeuclidean': 'Euclidean distance',
}


def as_distances(rdm, metric: str) -> tuple[np.ndarray, str]:
  """The distances classical MDS maps for an RDM of `metric`, and a label.

  1 - r, 1 - cos and squared Euclidean RDMs are squared Euclidean
  distances (of the centred, unit-norm patterns for 1 - r, up to a factor
  2): their square root, tiny negatives (rounding) clipped to 0 first;
  'euclidean' RDMs as they are.

  Args:
    rdm: [n, n] or condensed RDM.
    metric: 'correlation', 'euclidean', 'sqeuclidean' or 'cosine'.

  Returns:
    (float64 distances of rdm's shape, the label for a figure:
    'sqrt(1 - r)', 'sqrt(1 - cos)' or 'Euclidean distance').
  """
  r = np.asarray(rdm, np.float64)
  if metric == 'euclidean':
    return r, 'Euclidean distance'
  if metric not in _ROOTED:
    raise InputError(
      f'metric {metric!r} unknown: use correlation, euclidean, sqeuclidean'
      ' or cosine'
    )
  return np.sqrt(np.maximum(r, 0.0)), _ROOTED[metric]


def _centred(rdm) -> np.ndarray:
  """B = -1/2 H D^2 H of an RDM of distances D, float64 [n, n]."""
  b = _square(rdm)
  b *= b
  r = b.mean(1)
  b -= r[:, None]
  b -= r[None, :]
  b += r.mean()
  b *= -0.5
  return b


def negative_share(rdm) -> float:
  """The share of B's eigenvalue mass that is negative: sum |lambda < 0| /
  sum |lambda| of B = -1/2 H D^2 H (all eigenvalues, O(n^3)).

  0 for Euclidean distances (to rounding: ~1e-16 relative), > 0 where the
  RDM is no Euclidean distance, for example 1 - r itself in place of its
  root (`as_distances`).
  """
  lam = linalg.eigvalsh(_centred(rdm))
  total = np.abs(lam).sum()
  return float(np.abs(lam[lam < 0]).sum() / total) if total > 0 else 0.0


def mds(rdm, dim: int = 2, seed: int = 0) -> np.ndarray:
  """Classical MDS of an RDM of distances: [n, dim] float64 coordinates.

  Args:
    rdm: [n, n] or condensed [n(n-1)/2] finite distances (the upper
      triangle is used). For a squared-distance RDM ('sqeuclidean', and
      1 - r or 1 - cos) pass its square root: `as_distances(rdm, metric)`.
    dim: dimensions of the map.
    seed: start vector of the Lanczos solver above 2000 images (the dense
      solver below needs none); the result does not depend on it beyond
      the solver's tolerance.

  Returns:
    X [n, dim] with X X^T the best rank-dim approximation of
    B = -1/2 H D^2 H (its top eigenpairs, X = V sqrt(max(lambda, 0))), in
    decreasing order of eigenvalue, each column's largest-|.| entry positive.
  """
  b = _centred(rdm)
  n = b.shape[0]
  if n < 2 or not 1 <= dim <= n:
    raise InputError(f'{n} images and dim={dim}: need 1 <= dim <= n, n >= 2')
  if n <= _DENSE_MAX or dim >= n - 1:
    lam, v = linalg.eigh(b, subset_by_index=(n - dim, n - 1))
  else:
    v0 = np.random.default_rng(seed).standard_normal(n)
    lam, v = splinalg.eigsh(b, k=dim, which='LA', v0=v0)
  order = np.argsort(lam)[::-1]
  lam, v = lam[order], v[:, order]
  big = np.argmax(np.abs(v), axis=0)
  v *= np.sign(v[big, np.arange(dim)])
  return v * np.sqrt(np.maximum(lam, 0))
