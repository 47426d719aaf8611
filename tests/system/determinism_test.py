"""Two runs of one seed on one machine (data, rdm, train with its leaked
variant, eval) give the same results.json, metrics.jsonl and report.md,
apart from the figures that measure time.

Each run is its own process (as two `rdmjax` commands would be), with
another PYTHONHASHSEED, so that an order that depends on string hashing
(iterating a set of names) would show; each writes its own synthetic
subject into its own workdir.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The keys that measure time, excluded from the comparison (each must be
# present, so that this list stays honest): training throughput in pairs
# per second over the last logged steps (`rdmjax.training.loop._loop`), of the run
# and of its leaked variant. No other entry of results.json holds a wall
# time, date or speed; timings.jsonl and metrics.jsonl's wall_s hold the
# rest and are not results.
TIME_KEYS = (
  ('train', 'pairs_per_s'),
  ('train', 'leaked', 'pairs_per_s'),
)
# metrics.jsonl's keys that measure time (the rest, losses and validation
# scores, must be equal too).
METRICS_TIME_KEYS = ('pairs_per_s', 'wall_s')

_RUN = """
import sys
sys.path.insert(0, 'tests')
from tiny_run import tiny
from rdmjax import stages
c = tiny(**{
  'train.steps': 4, 'train.eval_every': 2, 'ckpt.every': 2,
  'train.run_leaked': True, 'train.bootstrap': 20,
  'rdm.bootstrap': 20, 'rdm.permutations': 20,
})
for stage in ('data', 'rdm', 'train', 'eval'):
  stages.run(stage, c, sys.argv[1])
"""


def _run(workdir: Path, hash_seed: int) -> None:
  env = dict(os.environ, PYTHONHASHSEED=str(hash_seed), TQDM_DISABLE='1')
  p = subprocess.run(
    [sys.executable, '-c', _RUN, str(workdir)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert p.returncode == 0, p.stderr[-3000:]


def _drop(tree: dict, path: tuple[str, ...]) -> None:
  for k in path[:-1]:
    tree = tree[k]
  assert path[-1] in tree, f'time key {path} not in results.json'
  del tree[path[-1]]


def _relative(x, workdir: Path):
  """Paths inside the workdir written relative to it: the two runs' only
  input that differs is where they write."""
  if isinstance(x, dict):
    return {k: _relative(v, workdir) for k, v in x.items()}
  if isinstance(x, list):
    return [_relative(v, workdir) for v in x]
  if isinstance(x, str):
    return x.replace(str(workdir), '<workdir>')
  return x


def _differences(a, b, where=''):
  """Every path where a and b differ (exact equality, floats included)."""
  if isinstance(a, dict) and isinstance(b, dict):
    out = [f'{where}/{k}: only in one' for k in set(a) ^ set(b)]
    for k in sorted(set(a) & set(b)):
      out += _differences(a[k], b[k], f'{where}/{k}')
    return out
  if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    return [
      d
      for k, (x, y) in enumerate(zip(a, b))
      for d in _differences(x, y, f'{where}[{k}]')
    ]
  if type(a) is not type(b) or a != b:
    return [f'{where}: {a!r} != {b!r}']
  return []


@pytest.mark.slow
def test_same_seed_same_results(tmp_path):
  runs = {}
  for name, hash_seed in (('a', 1), ('b', 2)):
    w = tmp_path / name
    _run(w, hash_seed)
    res = json.loads((w / 'results.json').read_text())
    for key in TIME_KEYS:
      _drop(res, key)
    # As text: a NaN (a first validation score) equals itself.
    metrics = [
      json.dumps(
        {k: v for k, v in json.loads(x).items() if k not in METRICS_TIME_KEYS}
      )
      for x in (w / 'metrics.jsonl').read_text().splitlines()
    ]
    runs[name] = dict(
      results=_relative(res, w),
      metrics=metrics,
      report=(w / 'report.md').read_text(),
    )
  a, b = runs['a'], runs['b']
  assert {'data', 'rdm', 'train', 'eval'} <= set(a['results'])
  assert 'leaked' in a['results']['train']
  assert _differences(a['results'], b['results']) == []
  assert a['metrics'] == b['metrics'] and len(a['metrics']) >= 2
  assert a['report'] == b['report']
