"""Accelerator checks: skipped on machines without a GPU (conftest.py).

Run on a GPU machine with `pytest -m gpu tests/gpu_test.py`. The error bounds
are those of `launch/gpu_rdm_bench.sh` on an H200 at full-subject size
(tf32 7.9e-6, bf16_3x 1.6e-7, bf16 6.4e-5), with headroom.
"""

import numpy as np
import pytest

from rdmjax.rsa import rdm as rdm_lib

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(
  'precision,tol',
  [('float32', 1e-6), ('bf16_3x', 1e-6), ('tf32', 3e-5), ('bf16', 3e-4)],
)
def test_rdm_precision_on_gpu(precision, tol):
  x = np.random.default_rng(0).standard_normal((1500, 8192), np.float32)
  x64 = x.astype(np.float64)
  ref = 1.0 - np.corrcoef(x64)
  r = np.asarray(rdm_lib.rdm(x, 'correlation', precision=precision))
  iu = np.triu_indices(len(x), 1)
  assert np.abs(r[iu] - ref[iu]).max() / np.abs(ref[iu]).max() < tol
  np.testing.assert_array_equal(r, r.T)
