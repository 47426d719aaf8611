"""RDM benchmark: rdmjax correlation RDM vs numpy, scipy and rsatoolbox.

  rdmjax --mode=bench --config=configs/bench.py:suite=rdm --workdir=DIR
  python -m rdmjax.bench_rdm [n] [d]      # quick print, numpy baseline only

FLOP count: a full Gram `z @ z.T` is 2 n^2 d; rdmjax computes about half of
it (upper block rows) but `gflops` always counts the full 2 n^2 d so that it
compares with the numpy baseline; `gflops_done` counts what ran.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rdmjax import kernels
from rdmjax.bench import time_fn


def numpy_rdm(x: np.ndarray) -> np.ndarray:
  """The float32 matrix-product baseline: 1 - z @ z.T of unit centred rows."""
  z = x - x.mean(1, keepdims=True)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  return 1.0 - z @ z.T


def _scipy(x):
  from scipy.spatial.distance import pdist

  return pdist(x, 'correlation')


def _rsatoolbox(x):
  import rsatoolbox

  return rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), 'correlation')


def rel_err(r, ref: np.ndarray) -> float:
  """max |r - ref| / max |ref| over i < j."""
  iu = np.triu_indices(ref.shape[0], 1)
  r = np.asarray(r, np.float64)
  return float(np.abs(r[iu] - ref[iu]).max() / np.abs(ref[iu]).max())


def _done_fraction(n: int, tile: int) -> float:
  rows = [(min(r + tile, n) - r) * (n - r) for r in range(0, n, tile)]
  return sum(rows) / n**2


def run(config) -> list[dict[str, Any]]:
  """Figures for config.bench: n, d, repeats, precisions, baselines."""
  b = config.bench
  n, d, reps = int(b.n), int(b.d), int(b.repeats)
  x = np.random.default_rng(0).standard_normal((n, d), np.float32)
  ref = 1.0 - np.corrcoef(x.astype(np.float64))
  flop = 2.0 * n * n * d
  base = dict(suite='rdm', metric='correlation', n=n, d=d, flop_full=flop)
  out = []
  t_np = None
  if 'numpy' in b.baselines:
    t = time_fn(numpy_rdm, x, repeats=reps)
    t_np = t['median_s']
    out.append(
      dict(
        base,
        name='numpy_f32_matmul',
        **t,
        gflops=flop / t_np / 1e9,
        rel_err=rel_err(numpy_rdm(x), ref),
      )
    )
  slow = {'scipy': _scipy, 'rsatoolbox': _rsatoolbox}
  slow_t = {}
  for name, fn in slow.items():
    if name not in b.baselines:
      continue
    if name == 'rsatoolbox' and importlib.util.find_spec('rsatoolbox') is None:
      continue
    bd = int(b.baseline_d) or d
    # Slow baselines run once, optionally on the first bd columns; their
    # time is linear in d, so it is scaled to d and flagged.
    t = time_fn(fn, x[:, :bd], repeats=1, warmup=0)
    slow_t[name] = t['median_s'] * d / bd
    out.append(
      dict(
        base,
        name=name,
        **t,
        d_run=bd,
        extrapolated=bd != d,
        median_s_at_d=slow_t[name],
      )
    )
  xd = jax.device_put(jnp.asarray(x))
  tile = int(b.tile) or kernels.default_tile(n)
  # 'auto' is what users get (host BLAS on a CPU backend for f32/tf32); the
  # jitted XLA tiles are timed too, so the CPU figure shows both paths.
  impls = ['auto'] + (['xla'] if jax.default_backend() == 'cpu' else [])
  for prec, impl in itertools.product(b.precisions, impls):
    if impl == 'xla' and prec == 'bf16':
      continue  # 'auto' already runs XLA for bf16
    fn = functools.partial(
      kernels.rdm,
      metric='correlation',
      precision=prec,
      tile=None if impl == 'auto' else tile,
      impl=impl,
    )
    t = time_fn(fn, xd, repeats=reps)
    name = f'rdmjax_{prec}' + ('_xla' if impl == 'xla' else '')
    fig = dict(base, name=name, precision=prec, impl=impl, tile=tile, **t)
    fig['gflops'] = flop / t['median_s'] / 1e9
    fig['gflops_done'] = fig['gflops'] * _done_fraction(n, tile)
    fig['rel_err'] = rel_err(fn(xd), ref)
    if t_np:
      fig['speedup_vs_numpy'] = t_np / t['median_s']
    for name, ts in slow_t.items():
      fig[f'speedup_vs_{name}'] = ts / t['median_s']
    out.append(fig)
  return out


if __name__ == '__main__':
  import ml_collections

  n, d = (
    int(a) for a in (sys.argv[1:3] if len(sys.argv) > 2 else (2000, 39548))
  )
  cfg = ml_collections.ConfigDict(
    dict(
      bench=dict(
        n=n,
        d=d,
        repeats=3,
        precisions=('float32', 'tf32', 'bf16_3x', 'bf16'),
        baselines=('numpy',),
        baseline_d=0,
        tile=0,
      )
    )
  )
  for fig in run(cfg):
    keep = ('name', 'median_s', 'gflops', 'rel_err', 'speedup_vs_numpy')
    print({k: fig[k] for k in keep if k in fig})
