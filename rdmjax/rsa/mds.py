"""A map of an RDM: classical (Torgerson) multidimensional scaling.

`mds(rdm, dim)` places the n images in dim dimensions from the top
eigenvectors of B = -1/2 H D^2 H (H = I - 11^T / n): for Euclidean
distances D, B is the Gram matrix of the centred points and the map recovers
them up to rotation, reflection and translation. No SMACOF iterations
follow: classical MDS is deterministic and exact for Euclidean distances,
while SMACOF (sklearn.manifold.MDS, which can start from this map) lowers
the stress only for non-Euclidean RDMs, with local minima and O(n^2) work
per iteration. Negative eigenvalues (non-Euclidean RDMs) give zero
coordinates. `mds_figure` draws the map coloured by a categorical label.
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
  d = np.zeros((n, n))
  d[np.triu_indices(n, 1)] = v
  return d + d.T


def mds(rdm, dim: int = 2, seed: int = 0) -> np.ndarray:
  """Classical MDS of an RDM of distances: [n, dim] float64 coordinates.

  Args:
    rdm: [n, n] or condensed [n(n-1)/2] distances (the upper triangle is
      used; for a squared-distance RDM such as 'sqeuclidean', pass its
      square root).
    dim: dimensions of the map.
    seed: start vector of the Lanczos solver above 2000 images (the dense
      solver below needs none); the result does not depend on it beyond
      the solver's tolerance.

  Returns:
    X [n, dim] with X X^T the best rank-dim approximation of
    B = -1/2 H D^2 H (its top eigenpairs, X = V sqrt(max(lambda, 0))), in
    decreasing order of eigenvalue, each column's largest-|.| entry positive.
  """
  b = _square(rdm)
  n = b.shape[0]
  if n < 2 or not 1 <= dim <= n:
    raise InputError(f'{n} images and dim={dim}: need 1 <= dim <= n, n >= 2')
  # B = -1/2 H D^2 H, double-centred in place.
  b *= b
  r = b.mean(1)
  b -= r[:, None]
  b -= r[None, :]
  b += r.mean()
  b *= -0.5
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
