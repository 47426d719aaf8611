"""The public face: `import rdmjax` loads no jax; each name works."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps


def test_import_rdmjax_loads_no_jax_and_no_submodule():
  code = (
    'import rdmjax, sys; '
    "print('jax' in sys.modules, sorted(m for m in sys.modules "
    "if m.startswith('rdmjax')))"
  )
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True
  ).stdout.strip()
  assert out == "False ['rdmjax']", out


def test_all_lists_every_export_with_a_docstring():
  import rdmjax

  assert sorted(rdmjax.__all__) == sorted(rdmjax._EXPORTS)
  for name in rdmjax.__all__:
    obj = getattr(rdmjax, name)
    assert (obj.__doc__ or '').strip(), name
  assert set(rdmjax.__all__) <= set(dir(rdmjax))
  with pytest.raises(AttributeError, match='no attribute'):
    rdmjax.not_a_name  # noqa: B018


def test_rdm_compare_and_ceiling_against_numpy_and_scipy():
  import rdmjax

  rng = np.random.default_rng(0)
  x = rng.normal(size=(12, 40)).astype(np.float32)
  r = np.asarray(rdmjax.rdm(x, 'correlation'))
  np.testing.assert_allclose(
    r, 1 - np.corrcoef(x.astype(np.float64)), atol=2e-6
  )
  m = 1 - np.corrcoef(x + rng.normal(size=x.shape))
  iu = np.triu_indices(12, 1)
  want = sps.spearmanr(r[iu], m[iu]).statistic
  assert float(rdmjax.compare_rdms(r, m, 'spearman')) == pytest.approx(
    want, abs=1e-6
  )
  # Leave-one-out ceiling of z-scored subject RDMs, in float64 numpy.
  tri = [(1 - np.corrcoef(x + rng.normal(size=x.shape)))[iu] for _ in range(3)]
  z = [(v - v.mean()) / v.std() for v in tri]
  low = np.mean([np.corrcoef(tri[s], sum(z) - z[s])[0, 1] for s in range(3)])
  up = np.mean([np.corrcoef(tri[s], sum(z))[0, 1] for s in range(3)])
  got = rdmjax.noise_ceiling({f's{k}': v for k, v in enumerate(tri)}, 'corr')
  assert got['lower'] == pytest.approx(low, abs=1e-9)
  assert got['upper'] == pytest.approx(up, abs=1e-9)


def test_kernels_is_a_deprecated_alias():
  import rdmjax
  from rdmjax.rsa import rdm

  with pytest.warns(DeprecationWarning, match='rdmjax.rsa.rdm'):
    assert rdmjax.kernels is rdm
