"""Where a job's time goes: per-stage work, compiles and figure waits, the
XLA programs made and the console lines, beside a fixed calibration
workload measured in the same run. One JSON line per measurement, printed
as it is measured.

  python launch/overhead_bench.py                       # tiny and default jobs
  python launch/overhead_bench.py --jobs=tiny --repeat=2
  python launch/overhead_bench.py --tree=/path/to/other/checkout  # A/B

Each job runs twice: cold (an empty compilation cache) and warm (the same
command again on the filled cache, `--config.resume=overwrite`). The
calibration (20 numpy 1024^3 float32 matrix products and three 600 x 600
heatmaps saved as PNG by matplotlib) runs before each job, so a ratio to
it says how a job compares on another or a busier machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOBS = {
  'tiny': ['--config=configs/default.py:tiny'],
  'default': [],
}
BAR = re.compile(r'\d+%\|')  # a tqdm progress bar line


def calibration() -> float:
  """Seconds of the fixed workload (numpy BLAS and matplotlib PNGs)."""
  import io

  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import numpy as np

  rng = np.random.default_rng(0)
  a = rng.standard_normal((1024, 1024), dtype=np.float32)
  heat = rng.random((600, 600))
  t0 = time.perf_counter()
  for _ in range(20):
    a @ a
  for _ in range(3):
    fig, ax = plt.subplots(figsize=(5, 4), layout='constrained')
    fig.colorbar(ax.imshow(heat), ax=ax, label='1 - Pearson r')
    fig.savefig(io.BytesIO(), format='png', dpi=200)
    plt.close(fig)
  return time.perf_counter() - t0


def run_job(tree: Path, flags: list[str], workdir: Path, cache: Path) -> dict:
  """One job: its stages' timings rows, wall time and console lines."""
  env = dict(os.environ, PYTHONPATH=str(tree))
  env.pop('TQDM_DISABLE', None)
  cmd = [
    sys.executable,
    '-m',
    'rdmjax.main',
    f'--workdir={workdir}',
    f'--compilation_cache={cache}',
    '--config.resume=overwrite',
    *flags,
  ]
  t0 = time.perf_counter()
  p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if p.returncode:
    raise SystemExit(f'{" ".join(cmd)} failed:\n{p.stderr[-3000:]}')
  lines = (p.stdout + p.stderr).replace('\r', '\n').splitlines()
  console = [x for x in lines if x.strip() and not BAR.search(x)]
  rows = [
    json.loads(x) for x in (workdir / 'timings.jsonl').read_text().splitlines()
  ]
  return {'wall_s': round(wall, 2), 'console_lines': len(console), 'rows': rows}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--jobs', default='tiny,default')
  ap.add_argument('--repeat', type=int, default=1)
  ap.add_argument('--tree', default=str(REPO), help='the checkout to run')
  args = ap.parse_args()
  tree = Path(args.tree).resolve()
  commit = subprocess.run(
    ['git', 'rev-parse', '--short', 'HEAD'],
    cwd=tree,
    capture_output=True,
    text=True,
  ).stdout.strip()
  for _ in range(args.repeat):
    for job in args.jobs.split(','):
      cal = calibration()
      print(json.dumps({'calibration_s': round(cal, 3)}), flush=True)
      tmp = Path(tempfile.mkdtemp(prefix=f'rdmjax-{job}-'))
      try:
        for run in ('cold', 'warm'):
          got = run_job(tree, JOBS[job], tmp / 'work', tmp / 'cache')
          stages = {r['stage']: r for r in got.pop('rows')[-3:]}
          out = dict(job=job, run=run, commit=commit, **got)
          out['over_calibration'] = round(got['wall_s'] / cal, 1)
          out['programs'] = sum(r.get('programs', 0) for r in stages.values())
          out['stages'] = stages
          print(json.dumps(out), flush=True)
      finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
  main()
