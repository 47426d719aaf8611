"""rdmjax.rsa.mds: the root of squared-distance RDMs, negative eigenvalues,
refusal of non-finite RDMs (the older MDS tests are in compare_test.py)."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from rdmjax.errors import InputError
from rdmjax.rsa import mds
from rdmjax.rsa import rdm as rdm_lib


def _patterns(n=60, d=200, seed=0):
  """Low-rank signal, noise and an offset, like voxel responses (n < d)."""
  rng = np.random.default_rng(seed)
  base = rng.standard_normal((n, 6)) @ rng.standard_normal((6, d))
  return (base + rng.standard_normal((n, d)) + 3.0).astype(np.float32)


def _brute_share(d):
  """float64 numpy: negative eigenvalue mass of -1/2 H D^2 H."""
  n = d.shape[0]
  h = np.eye(n) - np.ones((n, n)) / n
  lam = np.linalg.eigvalsh(-0.5 * h @ (d**2) @ h)
  return np.abs(lam[lam < 0]).sum() / np.abs(lam).sum()


@pytest.mark.parametrize('metric', ['correlation', 'cosine', 'sqeuclidean'])
def test_root_of_squared_metrics_is_euclidean(metric):
  """1 - r, 1 - cos and squared distances are squared Euclidean distances:
  after the root B is positive semi-definite (negative share ~0), before
  it a large share of B's eigenvalue mass is negative."""
  r = np.asarray(rdm_lib.rdm(_patterns(), metric))
  dist, label = mds.as_distances(r, metric)
  assert (
    label
    == {
      'correlation': 'sqrt(1 - r)',
      'cosine': 'sqrt(1 - cos)',
      'sqeuclidean': 'Euclidean distance',
    }[metric]
  )
  assert dist.dtype == np.float64 and dist.shape == r.shape
  assert mds.negative_share(dist) < 1e-8
  assert _brute_share(dist) < 1e-8
  raw = mds.negative_share(r)
  assert raw > 0.01  # 1 - r mapped as a distance: not Euclidean
  assert raw == pytest.approx(_brute_share(r), rel=1e-8)


def test_euclidean_rdm_is_mapped_as_it_is():
  r = np.asarray(rdm_lib.rdm(_patterns(), 'euclidean'))
  dist, label = mds.as_distances(r, 'euclidean')
  np.testing.assert_array_equal(dist, r)
  assert label == 'Euclidean distance'
  with pytest.raises(InputError, match='metric'):
    mds.as_distances(r, 'manhattan')


def test_root_clips_rounding_negatives():
  d = squareform([4.0, -1e-9, 1.0])
  dist, _ = mds.as_distances(d, 'sqeuclidean')
  np.testing.assert_array_equal(dist, squareform([2.0, 0.0, 1.0]))


def test_map_of_rooted_sqeuclidean_recovers_the_points():
  """MDS of sqrt(sqeuclidean) = the centred points' distances (scipy
  float64), all dimensions kept; 1 - r maps to sqrt(2) x the distances of
  the centred unit-norm patterns."""
  x = _patterns(n=40, d=300)
  x64 = x.astype(np.float64)
  r = np.asarray(rdm_lib.rdm(x, 'sqeuclidean'))
  dist, _ = mds.as_distances(r, 'sqeuclidean')
  y = mds.mds(dist, dim=39)
  ref = pdist(x64 - x64.mean(0))
  assert np.abs(pdist(y) - ref).max() / ref.max() < 1e-6
  np.testing.assert_allclose(y.mean(0), 0, atol=1e-9 * ref.max())
  # correlation: sqrt(1 - r) = |z_i - z_j| / sqrt(2)
  z = x64 - x64.mean(1, keepdims=True)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  dist, _ = mds.as_distances(rdm_lib.rdm(x, 'correlation'), 'correlation')
  y = mds.mds(dist, dim=39)
  ref = pdist(z) / np.sqrt(2)
  assert np.abs(pdist(y) - ref).max() / ref.max() < 1e-6


@pytest.mark.parametrize('bad', [np.nan, np.inf])
def test_mds_refuses_non_finite_rdms(bad):
  d = squareform(pdist(_patterns(n=10)))
  d[2, 7] = d[7, 2] = bad
  for r in (d, squareform(d, checks=False)):
    with pytest.raises(InputError) as err:
      mds.mds(r)
    text = str(err.value)
    assert '\n' not in text
    assert text.startswith('RDM has 1 non-finite entries (NaN or inf) of 45')
  with pytest.raises(InputError, match='non-finite'):
    mds.negative_share(d)
