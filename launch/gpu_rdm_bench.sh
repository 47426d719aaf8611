#!/usr/bin/env bash
# Full-subject correlation RDM on one GPU: time, TFLOP/s, error vs float64.
#
# Usage:   bash launch/gpu_rdm_bench.sh
# Env (all optional):
#   PYTHON   interpreter with jax[cuda] and numpy       (default: python)
#   N, D     responses shape                            (default: 9841 39548,
#            subj01 of Algonauts 2023, random data)
#   TILES    rdm block-row heights to time, 0 = default (default: "0")
#   REPEATS  timed calls after one warm-up call         (default: 5)
# Needs only jax[cuda] and numpy (no rsatoolbox); about 1-2 minutes of GPU
# time. The float64 reference is a host numpy product on a row subset (the
# first 1024 rows against all rows), so the error is that of those rows.
# TFLOP/s: "full" counts the full Gram 2 n^2 d (comparable with a plain
# z @ z.T), "done" counts the upper block rows that rdmjax computes.
# A plain jitted 1 - z @ z.T at each precision is timed as the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
export N="${N:-9841}" D="${D:-39548}" TILES="${TILES:-0}" REPEATS="${REPEATS:-5}"
"${PYTHON:-python}" - <<'PY'
import os, time
import jax, jax.numpy as jnp, numpy as np
from rdmjax import kernels

n, d, reps = int(os.environ['N']), int(os.environ['D']), int(os.environ['REPEATS'])
tiles = [int(t) or kernels.default_tile(n) for t in os.environ['TILES'].split()]
print(f'device {jax.devices()[0].device_kind} x{jax.device_count()}  jax {jax.__version__}  n={n} d={d}')
x = np.random.default_rng(0).standard_normal((n, d), np.float32)
m = min(n, 1024)
x64 = x.astype(np.float64)
z64 = x64 - x64.mean(1, keepdims=True)
z64 /= np.linalg.norm(z64, axis=1, keepdims=True)
ref = 1.0 - z64[:m] @ z64.T  # [m, n] rows of the float64 RDM
ref[np.arange(m), np.arange(m)] = 0.0
del x64, z64
xd = jax.device_put(x)
flop = 2.0 * n * n * d

def timeit(fn):
  fn(xd).block_until_ready()
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter(); fn(xd).block_until_ready(); ts.append(time.perf_counter() - t0)
  return float(np.median(ts))

def err(r):
  r = np.asarray(r[:m], np.float64)
  return float(np.abs(r - ref).max() / np.abs(ref).max())

def done(tile):
  return sum((min(r + tile, n) - r) * (n - r) for r in range(0, n, tile)) / n**2

prec = {'float32': jax.lax.Precision.HIGHEST, 'tf32': None, 'bf16': None,
        'bf16_3x': jax.lax.DotAlgorithmPreset.BF16_BF16_F32_X3}
for p in ('float32', 'tf32', 'bf16_3x', 'bf16'):
  @jax.jit
  def plain(x, p=p):
    z = x - x.mean(1, keepdims=True)
    z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    if p == 'bf16':
      z = z.astype(jnp.bfloat16)
    return 1.0 - jnp.matmul(z, z.T, precision=prec[p], preferred_element_type=jnp.float32)
  t0 = timeit(plain)
  print(f'plain 1-z@z.T {p:8s} {t0*1e3:8.2f} ms  {flop/t0/1e12:7.1f} TFLOP/s  rel_err {err(plain(xd)):.2e}')
  for tile in tiles:
    f = lambda x, p=p, tile=tile: kernels.rdm(x, 'correlation', precision=p, tile=tile)
    t = timeit(f)
    print(f'rdmjax        {p:8s} {t*1e3:8.2f} ms  {flop/t/1e12:7.1f} TFLOP/s full-equiv'
          f'  {flop*done(tile)/t/1e12:7.1f} done  rel_err {err(f(xd)):.2e}'
          f'  tile {tile}  speedup_vs_plain {t0/t:.2f}')
PY
