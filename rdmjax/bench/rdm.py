"""RDM benchmark: rdmjax correlation RDM vs numpy, scipy and rsatoolbox.

  rdmjax --mode=bench --config=configs/bench.py:suite=rdm --workdir=DIR
  bash launch/gpu_rdm_bench.sh      # full subject on a GPU, plain baseline

FLOP count: a full Gram `z @ z.T` is 2 n^2 d; rdmjax computes about half of
it (upper block rows) but `gflops` always counts the full 2 n^2 d so that it
compares with the numpy baseline; `gflops_done` counts what ran.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from scipy.spatial.distance import pdist

from rdmjax.bench import time_fn
from rdmjax.rsa import rdm as rdm_lib


def numpy_rdm(x: np.ndarray) -> np.ndarray:
  """The float32 matrix-product baseline: 1 - z @ z.T of unit centred rows."""
  z = x - x.mean(1, keepdims=True)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  return 1.0 - z @ z.T


def _scipy(x):

  return pdist(x, 'correlation')


def _rsatoolbox(x):
  # rsatoolbox, on first use: optional (the test and bench extras).
  import rsatoolbox

  return rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(x), 'correlation')


def reference_rows(x: np.ndarray, m: int) -> np.ndarray:
  """Rows [:m] of the float64 correlation RDM: [m, n] (zero diagonal).

  At full-subject size the whole float64 RDM costs minutes on the host, so
  the error is that of the first m rows (each against all n).
  """
  z = x.astype(np.float64)
  z -= z.mean(1, keepdims=True)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  ref = 1.0 - z[:m] @ z.T
  ref[np.arange(m), np.arange(m)] = 0.0
  return ref


def rel_err(r, ref: np.ndarray) -> float:
  """max |r - ref| / max |ref| off the diagonal of the reference rows.

  ref: [m, n], rows [:m] of the float64 RDM; the diagonal is left out (an
  RDM's is zero by definition, a plain product's is rounding).
  """
  m = ref.shape[0]
  diff = np.abs(np.asarray(r[:m], np.float64) - ref)
  diff[np.arange(m), np.arange(m)] = 0.0
  return float(diff.max() / np.abs(ref).max())


def plain_rdm(precision: str):
  """The jitted baseline: `1 - z @ z.T` of unit centred rows, one product."""
  prec = {
    'float32': lax.Precision.HIGHEST,
    'bf16_3x': lax.DotAlgorithmPreset.BF16_BF16_F32_X3,
  }.get(precision)

  @jax.jit
  def f(x):
    z = x - x.mean(1, keepdims=True)
    z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    if precision == 'bf16':
      z = z.astype(jnp.bfloat16)
    g = jnp.matmul(z, z.T, precision=prec, preferred_element_type=jnp.float32)
    return 1.0 - g

  return f


def _done_fraction(n: int, tile: int) -> float:
  rows = [(min(r + tile, n) - r) * (n - r) for r in range(0, n, tile)]
  return sum(rows) / n**2


def _host_baselines(b, x, ref, base) -> Iterator[dict[str, Any]]:
  """numpy's f32 RDM, its product alone on prepared rows ('gram'), then
  scipy and rsatoolbox (once, maybe fewer d)."""
  d, reps = x.shape[1], int(b.repeats)
  if 'numpy' in b.baselines:
    t = time_fn(numpy_rdm, x, repeats=reps)
    yield dict(
      base,
      name='numpy_f32_matmul',
      **t,
      gflops=base['flop_full'] / t['median_s'] / 1e9,
      rel_err=rel_err(numpy_rdm(x), ref),
    )
  if 'gram' in b.baselines:
    # The product alone, on rows prepared beforehand: the floor of any RDM.
    z = x - x.mean(1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    t = time_fn(lambda: z @ z.T, repeats=reps)
    yield dict(
      base,
      name='numpy_gram_prepared',
      **t,
      gflops=base['flop_full'] / t['median_s'] / 1e9,
    )
    del z
  slow = {'scipy': _scipy, 'rsatoolbox': _rsatoolbox}
  for name, fn in slow.items():
    if name not in b.baselines:
      continue
    if name == 'rsatoolbox' and importlib.util.find_spec('rsatoolbox') is None:
      continue
    bd = int(b.baseline_d) or d
    # Slow baselines run once, optionally on the first bd columns; their
    # time is linear in d, so it is scaled to d and flagged.
    t = time_fn(fn, x[:, :bd], repeats=1, warmup=0)
    yield dict(
      base,
      name=name,
      **t,
      d_run=bd,
      extrapolated=bd != d,
      median_s_at_d=t['median_s'] * d / bd,
    )


def run(config) -> Iterator[dict[str, Any]]:
  """Figures for config.bench: n, d, repeats, precisions, baselines, tile.

  Baselines first (numpy, scipy, rsatoolbox on the host), then per
  precision the plain jitted product ('plain' in baselines) and rdmjax
  beside it; every rdmjax figure carries its ratios to the baselines
  measured above it in the same run.
  """
  b = config.bench
  n, d, reps = int(b.n), int(b.d), int(b.repeats)
  x = np.random.default_rng(0).standard_normal((n, d), np.float32)
  ref = reference_rows(x, min(n, int(b.get('ref_rows', 1024))))
  flop = 2.0 * n * n * d
  base = dict(suite='rdm', metric='correlation', n=n, d=d, flop_full=flop)
  host = {}
  for fig in _host_baselines(b, x, ref, base):
    host[fig['name']] = fig.get('median_s_at_d', fig['median_s'])
    yield fig
  xd = jax.device_put(jnp.asarray(x))
  tile = int(b.tile) or rdm_lib.default_tile(n)
  # 'auto' is what users get (host BLAS on a CPU backend for f32/tf32); the
  # jitted XLA tiles are timed too, so the CPU figure shows both paths.
  impls = ['auto'] + (['xla'] if jax.default_backend() == 'cpu' else [])
  for prec in b.precisions:
    ratios = dict(host)
    if 'plain' in b.baselines:
      f = plain_rdm(prec)
      t = time_fn(f, xd, repeats=reps)
      ratios['plain'] = t['median_s']
      yield dict(
        base,
        name=f'plain_{prec}',
        precision=prec,
        **t,
        gflops=flop / t['median_s'] / 1e9,
        rel_err=rel_err(f(xd), ref),
      )
    for impl in impls:
      if impl == 'xla' and prec == 'bf16':
        continue  # 'auto' already runs XLA for bf16
      fn = functools.partial(
        rdm_lib.rdm,
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
      for other, ts in ratios.items():
        key = {
          'numpy_f32_matmul': 'numpy',
          'numpy_gram_prepared': 'gram',
        }.get(other, other)
        fig[f'speedup_vs_{key}'] = ts / t['median_s']
      yield fig
  if b.get('mesh', False):
    yield from _mesh_figures(xd, n, d, base, reps, ref)


def full_rows_rdm(mesh):
  """The sharded baseline: each device computes whole row blocks
  `z[rows] @ z.T` (the full matrix, twice one triangle's arithmetic)."""

  def local(zr, za):
    return 1.0 - rdm_lib.gram(zr, za, 'float32')

  f = jax.shard_map(
    local, mesh=mesh, in_specs=(P('data'), P()), out_specs=P('data')
  )

  @jax.jit
  def run(x):
    z, _, _ = rdm_lib._rows(x, 'correlation')
    return f(rdm_lib._constrain(z, NamedSharding(mesh, P('data'))), z)

  return lambda x: run(jax.device_put(x, NamedSharding(mesh, P())))


def _mesh_figures(xd, n, d, base, reps, ref) -> Iterator[dict[str, Any]]:
  """float32 on one device, full row blocks on all, one triangle on all."""
  nd = jax.device_count()
  mesh = jax.make_mesh((nd,), ('data',))
  fns = {
    'one_device_xla': functools.partial(
      rdm_lib.rdm, metric='correlation', impl='xla'
    ),
    f'full_rows_mesh{nd}': full_rows_rdm(mesh),
    f'rdmjax_mesh{nd}': functools.partial(
      rdm_lib.rdm, metric='correlation', mesh=mesh
    ),
  }
  times = {}
  for name, fn in fns.items():
    if name.startswith('full_rows') and n % nd:
      continue  # rows must divide over the devices
    t = time_fn(fn, xd, repeats=reps)
    times[name] = t['median_s']
    fig = dict(base, name=name, precision='float32', devices=nd, **t)
    fig['rel_err'] = rel_err(np.asarray(fn(xd)), ref)
    for other, ts in times.items():
      if other != name:
        fig[f'speedup_vs_{other}'] = ts / t['median_s']
    yield fig
