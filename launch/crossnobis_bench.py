"""Crossnobis on a searchlight-like batch: rdmjax's one program for every
sphere against rsatoolbox's per-sphere calls, on the same data. One JSON
line per figure, printed as it is measured.

  python launch/crossnobis_bench.py                         # defaults
  python launch/crossnobis_bench.py --spheres=500 --channels=60 --rsa-spheres=20

S spheres of P channels, C conditions x F runs (one pattern per condition
and run, in shuffled order): a pattern per condition and sphere, noise
correlated over channels, a common offset. Figures:

- precision: the noise precision from measurements ('shrinkage_diag', dof
  N - C) of every sphere: `crossval.precision_from_measurements` on the
  [S, N, P] batch against rsatoolbox's `prec_from_measurements(dataset,
  'cond', dof=N - C)` per sphere;
- crossnobis: the RDM given each sphere's precision (rdmjax's float32
  precisions, the same values given to rsatoolbox in float64);
- crossval_euclidean: noise=None;
- pipeline: precision and crossnobis from the patterns.

rdmjax: the median of --repeat calls after one call that compiles
(compile_s: its extra time), numpy in, the RDMs back on the host.
rsatoolbox: the first --rsa-spheres spheres, timed once, scaled to a time
per sphere. max_abs_diff: over those spheres, rdmjax (float32) against
rsatoolbox (float64); max_rel_diff: the same over max |rsatoolbox|.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def emit(**kw) -> None:
  print(json.dumps(kw), flush=True)


def cpu_model() -> str:
  try:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def commit() -> str:
  try:
    return subprocess.run(
      ['git', 'rev-parse', '--short', 'HEAD'],
      cwd=REPO,
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def make_data(s: int, c: int, f: int, p: int, seed: int):
  """(x [S, N, P] float64, conditions [N], runs [N])."""
  rng = np.random.default_rng(seed)
  cond = np.tile(np.arange(c), f)
  run = np.repeat(np.arange(f), c)
  order = rng.permutation(c * f)
  cond, run = cond[order], run[order]
  mix = np.eye(p) + 0.3 * rng.standard_normal((p, p)) / np.sqrt(p)
  x = np.empty((s, c * f, p))
  for k in range(s):
    signal = 0.5 * rng.standard_normal((c, p))
    noise = rng.standard_normal((c * f, p)) @ mix
    x[k] = 5.0 + signal[cond] + noise
  return x, cond, run


def time_rdmjax(fn, repeat: int) -> tuple[float, float, object]:
  """(median seconds, compile seconds, result) of fn()."""
  t0 = time.perf_counter()
  out = fn()
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeat):
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  return med, max(first - med, 0.0), out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--spheres', type=int, default=2000)
  ap.add_argument('--channels', type=int, default=100)
  ap.add_argument('--conditions', type=int, default=20)
  ap.add_argument('--runs', type=int, default=8)
  ap.add_argument(
    '--rsa-spheres',
    type=int,
    default=50,
    help='spheres rsatoolbox computes (timed, scaled per sphere)',
  )
  ap.add_argument('--repeat', type=int, default=3)
  ap.add_argument('--seed', type=int, default=0)
  a = ap.parse_args()

  import jax
  from rsatoolbox.data import Dataset
  from rsatoolbox.data.noise import prec_from_measurements
  from rsatoolbox.rdm import calc_rdm_crossnobis

  from rdmjax.rsa import crossval
  from rdmjax.rsa.interop import condensed

  warnings.simplefilter('ignore', RuntimeWarning)  # rsatoolbox's casts
  s, c, f, p = a.spheres, a.conditions, a.runs, a.channels
  n = c * f
  k = min(a.rsa_spheres, s)
  emit(
    figure='setup',
    spheres=s,
    channels=p,
    conditions=c,
    runs=f,
    rsa_spheres=k,
    repeat=a.repeat,
    cpu=cpu_model(),
    cpus=os.cpu_count(),
    backend=jax.default_backend(),
    jax=jax.__version__,
    numpy=np.__version__,
    rsatoolbox=importlib.metadata.version('rsatoolbox'),
    commit=commit(),
  )
  x, cond, run = make_data(s, c, f, p, a.seed)
  x32 = x.astype(np.float32)
  sets = [
    Dataset(x[i], obs_descriptors={'cond': cond, 'run': run}) for i in range(k)
  ]

  def figure(name, ours, theirs, got, want, t_ours, compile_s, t_theirs):
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    scale = max(float(np.abs(w).max()) for w in want)
    emit(
      figure=name,
      rdmjax_ms_per_sphere=round(1e3 * t_ours / s, 4),
      rsatoolbox_ms_per_sphere=round(1e3 * t_theirs / k, 4),
      ratio=round((t_theirs / k) / (t_ours / s), 1),
      max_abs_diff=float(f'{diff:.3g}'),
      max_rel_diff=float(f'{diff / scale:.3g}'),
      rdmjax_total_s=round(t_ours, 3),
      compile_s=round(compile_s, 3),
      spheres=s,
      rsa_spheres=k,
      rdmjax=ours,
      rsatoolbox=theirs,
    )

  # Noise precision from measurements.
  def ours_prec():
    return jax.block_until_ready(
      crossval.precision_from_measurements(x32, cond)
    )

  t_ours, comp, prec = time_rdmjax(ours_prec, a.repeat)
  t0 = time.perf_counter()
  ref_prec = [prec_from_measurements(d, 'cond', dof=n - c) for d in sets]
  t_theirs = time.perf_counter() - t0
  prec_host = np.asarray(prec)
  figure(
    'precision',
    'precision_from_measurements(x [S, N, P], conditions)',
    "prec_from_measurements(dataset, 'cond', dof=N - C) per sphere",
    [prec_host[i] for i in range(k)],
    ref_prec,
    t_ours,
    comp,
    t_theirs,
  )

  # Crossnobis given the precisions; cross-validated Euclidean.
  for name, noise in (('crossnobis', prec), ('crossval_euclidean', None)):

    def ours_rdm(noise=noise):
      return np.asarray(crossval.crossnobis(x32, cond, run, noise).rdm)

    t_ours, comp, r = time_rdmjax(ours_rdm, a.repeat)
    t0 = time.perf_counter()
    want = [
      calc_rdm_crossnobis(
        d,
        'cond',
        noise=None if noise is None else prec_host[i].astype(np.float64),
        cv_descriptor='run',
      ).dissimilarities[0]
      for i, d in enumerate(sets)
    ]
    t_theirs = time.perf_counter() - t0
    figure(
      name,
      'crossnobis(x [S, N, P], conditions, runs, '
      + ('precisions [S, P, P])' if noise is not None else 'None)'),
      "calc_rdm_crossnobis(dataset, 'cond', noise, cv_descriptor='run')"
      ' per sphere',
      [condensed(r[i]) for i in range(k)],
      want,
      t_ours,
      comp,
      t_theirs,
    )

  # The whole chain from patterns.
  def ours_chain():
    w = crossval.precision_from_measurements(x32, cond)
    return np.asarray(crossval.crossnobis(x32, cond, run, w).rdm)

  t_ours, comp, r = time_rdmjax(ours_chain, a.repeat)
  t0 = time.perf_counter()
  want = [
    calc_rdm_crossnobis(
      d,
      'cond',
      noise=prec_from_measurements(d, 'cond', dof=n - c),
      cv_descriptor='run',
    ).dissimilarities[0]
    for d in sets
  ]
  t_theirs = time.perf_counter() - t0
  figure(
    'pipeline',
    'precision_from_measurements, then crossnobis',
    'prec_from_measurements, then calc_rdm_crossnobis, per sphere',
    [condensed(r[i]) for i in range(k)],
    want,
    t_ours,
    comp,
    t_theirs,
  )


if __name__ == '__main__':
  main()
