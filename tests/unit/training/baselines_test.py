"""Zero-shot RSA and the ceiling against scipy in float64."""

import numpy as np
from scipy import stats
from scipy.spatial.distance import pdist

from rdmjax.training import baselines


def test_split_rsa_equals_scipy_on_every_pair():
  rng = np.random.default_rng(0)
  lat = rng.standard_normal((80, 5))
  emb = np.tanh(lat @ rng.standard_normal((5, 32))) + 0.3 * rng.standard_normal(
    (80, 32)
  )
  z = lat @ rng.standard_normal((5, 300)) + rng.standard_normal((80, 300))
  idx = np.sort(rng.choice(80, 30, replace=False))
  for metric in ('correlation', 'euclidean'):
    want = stats.spearmanr(
      pdist(emb[idx], 'correlation'), pdist(z[idx], metric)
    )[0]
    got = baselines.zero_shot_rsa(emb, z, idx, metric)
    assert abs(got - want) < 1e-4 and want > 0.2
    want = stats.spearmanr(pdist(z[idx] + 0.5, metric), pdist(z[idx], metric))[
      0
    ]
    assert abs(baselines.ceiling_rsa(z + 0.5, z, idx, metric) - want) < 1e-4
