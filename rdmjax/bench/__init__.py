"""Benchmark harness: `run(config, workdir)` for `rdmjax --mode=bench`.

A suite is a module of this package (`rdm`, `pairs`, `clip`, `compare`;
imported lazily) with `run(config)`, which yields one dict per figure as it
is measured. The harness adds the context (devices, processes, versions, git
commit, config summary), prints each figure at once and appends it to
`WORKDIR/bench.jsonl`. `time_fn` is the one timer. No speed asserts
anywhere: compare figures only within one run or one card.
"""

from __future__ import annotations

import importlib
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax
import jax

from rdmjax import files, paths
from rdmjax.errors import InputError

SUITES = ('rdm', 'pairs', 'clip', 'compare')


def _block(out: Any) -> Any:
  return jax.tree.map(
    lambda a: a.block_until_ready() if hasattr(a, 'block_until_ready') else a,
    out,
  )


def time_fn(
  fn: Callable[..., Any],
  *args: Any,
  repeats: int = 3,
  warmup: int = 1,
  sync: Callable[[Any], Any] = _block,
) -> dict[str, Any]:
  """Wall time of `fn(*args)`: the first call, then `repeats` timed calls.

  Args:
    fn, args: what to time.
    repeats: timed calls after the warm-up.
    warmup: untimed calls after the first (compilation excluded).
    sync: waits for an output (default: JAX arrays' block_until_ready; the
      PyTorch baseline passes torch.cuda.synchronize).

  Returns:
    dict(first_s, median_s, min_s, times): seconds.
  """
  t0 = time.perf_counter()
  sync(fn(*args))
  first = time.perf_counter() - t0
  for _ in range(max(0, warmup - 1)):
    sync(fn(*args))
  times = []
  for _ in range(max(1, repeats)):
    t0 = time.perf_counter()
    sync(fn(*args))
    times.append(time.perf_counter() - t0)
  return dict(
    first_s=first,
    median_s=statistics.median(times),
    min_s=min(times),
    times=times,
  )


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


def cpu_model() -> str:
  """The host CPU's name as /proc/cpuinfo gives it (else platform's)."""
  try:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or 'unknown'


def context() -> dict[str, Any]:
  """Where a figure was measured."""
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
    module = importlib.import_module(f'rdmjax.bench.{suite}')
  except ModuleNotFoundError as e:
    raise InputError(
      f'bench suite {suite!r} needs a package not installed here ({e}):'
      ' pick another --config.bench.suite'
    ) from None
  ctx = context()
  summary = config.bench.to_dict()
  path = paths.path(workdir) / 'bench.jsonl'
  records = []
  for figure in module.run(config):
    rec = dict(ctx, time=time.strftime('%Y-%m-%dT%H:%M:%S'), config=summary)
    rec.update(figure)
    print(json.dumps(rec, default=str), flush=True)
    files.append_jsonl(path, rec)
    records.append(rec)
  return records
