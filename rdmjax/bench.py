"""Benchmark harness: `run(config, workdir)` for `rdmjax --mode=bench`.

A suite is a module with `run(config) -> list[dict]`, one dict per figure
(`rdmjax.bench_rdm`, `rdmjax.bench_pairs`, `rdmjax.bench_clip`; imported
lazily). The harness adds the context (devices, processes, versions, git
commit, config summary) and appends one JSON line per figure to
`WORKDIR/bench.jsonl`, printing it too. No speed asserts anywhere: compare
figures only within one run or one card.
"""

from __future__ import annotations

import importlib
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from rdmjax.errors import InputError

SUITES = {
  'rdm': 'rdmjax.bench_rdm',
  'pairs': 'rdmjax.bench_pairs',
  'clip': 'rdmjax.bench_clip',
}


def _block(out: Any) -> Any:
  return jax.tree.map(
    lambda a: a.block_until_ready() if hasattr(a, 'block_until_ready') else a,
    out,
  )


def time_fn(
  fn: Callable[..., Any], *args: Any, repeats: int = 3, warmup: int = 1
) -> dict[str, Any]:
  """Wall time of `fn(*args)` after `warmup` calls (compilation excluded).

  Returns:
    dict(median_s, min_s, times): seconds, outputs blocked until ready.
  """
  for _ in range(warmup):
    _block(fn(*args))
  times = []
  for _ in range(max(1, repeats)):
    t0 = time.perf_counter()
    _block(fn(*args))
    times.append(time.perf_counter() - t0)
  return dict(median_s=statistics.median(times), min_s=min(times), times=times)


def _git_commit() -> str | None:
  try:
    out = subprocess.run(
      ['git', 'rev-parse', '--short', 'HEAD'],
      capture_output=True,
      text=True,
      cwd=Path(__file__).parent,
      timeout=10,
      check=True,
    )
    return out.stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    return None


def context() -> dict[str, Any]:
  """Where a figure was measured."""
  import flax

  devices = jax.devices()
  return dict(
    device_kind=devices[0].device_kind,
    platform=devices[0].platform,
    device_count=len(devices),
    process_count=jax.process_count(),
    jax=jax.__version__,
    flax=flax.__version__,
    git=_git_commit(),
  )


def run(config, workdir: str | Path) -> list[dict[str, Any]]:
  """Runs `config.bench.suite`; appends each figure to WORKDIR/bench.jsonl.

  Args:
    config: the ConfigDict with a `bench` section (configs/bench.py).
    workdir: output folder.

  Returns:
    The JSON records written, one per figure.
  """
  suite = config.bench.suite
  if suite not in SUITES:
    raise InputError(
      f'bench suite {suite!r} unknown: use one of {list(SUITES)}'
    )
  try:
    module = importlib.import_module(SUITES[suite])
  except ModuleNotFoundError as e:
    raise InputError(
      f'bench suite {suite!r} needs {SUITES[suite]}, not installed here ({e}):'
      ' pick another --config.bench.suite'
    ) from None
  ctx = context()
  summary = config.bench.to_dict()
  path = Path(workdir) / 'bench.jsonl'
  path.parent.mkdir(parents=True, exist_ok=True)
  records = []
  for figure in module.run(config):
    rec = dict(ctx, time=time.strftime('%Y-%m-%dT%H:%M:%S'), config=summary)
    rec.update(figure)
    line = json.dumps(rec, default=str)
    print(line, flush=True)
    if jax.process_index() == 0:
      with path.open('a') as f:
        f.write(line + '\n')
    records.append(rec)
  return records
