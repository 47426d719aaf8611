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

After one rdmjax call that compiles (compile_s: its extra time), --repeat
rounds of (rdmjax on all S spheres, rsatoolbox on the first --rsa-spheres),
interleaved so both see the same load on a shared host; each figure is the
median round, per sphere. rdmjax: numpy in, the RDMs back on the host.
max_abs_diff: over rsatoolbox's spheres, rdmjax (float32) against
rsatoolbox (float64); max_rel_diff: the same over max |rsatoolbox|.
load_avg_1min: the host's load average (os.getloadavg) after the figure.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rdmjax.bench import cpu_model  # noqa: E402 (after the path)


def emit(**kw) -> None:
  print(json.dumps(kw), flush=True)


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


def measure(ours, theirs, repeat: int):
  """Interleaved timings, so both see the same load on a shared host:
  one call of ours (compiles), then `repeat` x (ours, theirs).

  Returns:
    (median s of ours, its compile s, median s of theirs, ours' result,
    theirs' result).
  """
  t0 = time.perf_counter()
  got = ours()
  first = time.perf_counter() - t0
  t_ours, t_theirs = [], []
  for _ in range(repeat):
    t0 = time.perf_counter()
    got = ours()
    t_ours.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    want = theirs()
    t_theirs.append(time.perf_counter() - t0)
  med = statistics.median(t_ours)
  return med, max(first - med, 0.0), statistics.median(t_theirs), got, want


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--spheres', type=int, default=1000)
  ap.add_argument('--channels', type=int, default=100)
  ap.add_argument('--conditions', type=int, default=20)
  ap.add_argument('--runs', type=int, default=8)
  ap.add_argument(
    '--rsa-spheres',
    type=int,
    default=25,
    help='spheres rsatoolbox computes (timed, scaled per sphere)',
  )
  ap.add_argument('--repeat', type=int, default=5)
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
    load_avg_1min=round(os.getloadavg()[0], 2),  # other work on the host
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

  def figure(name, ours, theirs, run_ours, run_theirs, as_rows):
    t_ours, comp, t_theirs, got, want = measure(run_ours, run_theirs, a.repeat)
    got = as_rows(got)
    diff = max(float(np.abs(got[i] - want[i]).max()) for i in range(k))
    scale = max(float(np.abs(w).max()) for w in want)
    emit(
      figure=name,
      rdmjax_ms_per_sphere=round(1e3 * t_ours / s, 4),
      rsatoolbox_ms_per_sphere=round(1e3 * t_theirs / k, 4),
      ratio=round((t_theirs / k) / (t_ours / s), 1),
      max_abs_diff=float(f'{diff:.3g}'),
      max_rel_diff=float(f'{diff / scale:.3g}'),
      rdmjax_total_s=round(t_ours, 3),
      compile_s=round(comp, 3),
      load_avg_1min=round(os.getloadavg()[0], 2),
      spheres=s,
      rsa_spheres=k,
      rdmjax=ours,
      rsatoolbox=theirs,
    )
    return got

  def rdm_rows(r):
    r = np.asarray(r)
    return [condensed(r[i]) for i in range(k)]

  def their_crossnobis(noises):
    return [
      calc_rdm_crossnobis(
        d, 'cond', noise=noises[i], cv_descriptor='run'
      ).dissimilarities[0]
      for i, d in enumerate(sets)
    ]

  # Noise precision from measurements.
  prec = figure(
    'precision',
    'precision_from_measurements(x [S, N, P], conditions)',
    "prec_from_measurements(dataset, 'cond', dof=N - C) per sphere",
    lambda: jax.block_until_ready(
      crossval.precision_from_measurements(x32, cond)
    ),
    lambda: [prec_from_measurements(d, 'cond', dof=n - c) for d in sets],
    np.asarray,
  )
  # Crossnobis given the precisions (the same values for both), and the
  # cross-validated Euclidean distance.
  prec_dev = jax.device_put(prec)
  given = [prec[i].astype(np.float64) for i in range(k)]
  figure(
    'crossnobis',
    'crossnobis(x [S, N, P], conditions, runs, precisions [S, P, P])',
    "calc_rdm_crossnobis(dataset, 'cond', noise, cv_descriptor='run') per"
    ' sphere',
    lambda: np.asarray(crossval.crossnobis(x32, cond, run, prec_dev).rdm),
    lambda: their_crossnobis(given),
    rdm_rows,
  )
  figure(
    'crossval_euclidean',
    'crossnobis(x [S, N, P], conditions, runs, None)',
    "calc_rdm_crossnobis(dataset, 'cond', None, cv_descriptor='run') per"
    ' sphere',
    lambda: np.asarray(crossval.crossnobis(x32, cond, run).rdm),
    lambda: their_crossnobis([None] * k),
    rdm_rows,
  )

  # The whole chain from patterns.
  def ours_chain():
    w = crossval.precision_from_measurements(x32, cond)
    return np.asarray(crossval.crossnobis(x32, cond, run, w).rdm)

  figure(
    'pipeline',
    'precision_from_measurements, then crossnobis',
    'prec_from_measurements, then calc_rdm_crossnobis, per sphere',
    ours_chain,
    lambda: their_crossnobis(
      [prec_from_measurements(d, 'cond', dof=n - c) for d in sets]
    ),
    rdm_rows,
  )


if __name__ == '__main__':
  main()
