"""Running stages on a workdir: one line per stage, its time, its state.

`run_stages` runs `todo` in turn, reusing what an identical config finished
(`rdmjax.run.workdir`), with the figures drawn by worker processes
(`rdmjax.report.figures`), and logs each stage's wall time, peak memory,
XLA compilation (count and seconds, from `jax.monitoring`) and the wait for
its figures as one JSON line (stdout and WORKDIR/timings.jsonl), so that
the work and the overhead show apart.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import time
from collections.abc import Sequence

import jax
from absl import logging

from rdmjax import files, stages
from rdmjax.report import figures
from rdmjax.run import workdir as workdir_lib

# jax.monitoring's events: one duration per XLA program made (compiled, or
# loaded from the persistent compilation cache), one event per cache hit.
COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
CACHE_HIT_EVENT = '/jax/compilation_cache/cache_hits'


class Compiles:
  """XLA programs made while active, those loaded from the persistent
  cache, and the seconds spent (a context manager over jax.monitoring)."""

  def __init__(self):
    self.programs, self.from_cache, self.seconds = 0, 0, 0.0

  def _duration(self, event: str, secs: float, **kw) -> None:
    if event == COMPILE_EVENT:
      self.programs += 1
      self.seconds += secs

  def _event(self, event: str, **kw) -> None:
    if event == CACHE_HIT_EVENT:
      self.from_cache += 1

  def __enter__(self) -> Compiles:
    # The same bound-method objects register and unregister.
    self._listeners = (self._duration, self._event)
    jax.monitoring.register_event_duration_secs_listener(self._listeners[0])
    jax.monitoring.register_event_listener(self._listeners[1])
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._listeners[0])
    jax.monitoring.unregister_event_listener(self._listeners[1])


def run_stages(
  config,
  workdir,
  todo: Sequence[str],
  state: str = 'new',
  mark: bool = True,
  name: str = '',
) -> None:
  """Runs each stage of todo on workdir.

  Args:
    state: 'same' (`workdir.check_config`): a stage finished earlier with
      this config is reused, in one line.
    mark: record each finished stage in the workdir (its owner does).
    name: a group run's subject, shown before the stage's name.
  """
  n = figures.default_workers()
  workers = figures.Workers(n) if n and files.is_writer() else None
  if workers is not None:
    workers.start()
  try:
    for stage in todo:
      if state == 'same' and workdir_lib.done(workdir, stage):
        reused(workdir, stage)
        continue
      logging.info('%sstage %s', f'{name}: ' if name else '', stage)
      t0 = time.perf_counter()
      with (
        Compiles() as compiles,
        figures.collecting(workdir, stage, workers) as drawn,
      ):
        stages.run(stage, config, workdir)
      wall = time.perf_counter() - t0
      log_time(workdir, stage, wall, name, compiles, drawn)
      if mark:
        workdir_lib.mark_done(workdir, stage, wall)
  finally:
    if workers is not None:
      workers.close()


def reused(workdir, stage: str) -> None:
  """The one line that says a stage was not run again."""
  print(
    f'rdmjax: {stage}: reused (finished earlier in {workdir} with this '
    'config; --config.resume=overwrite starts afresh)'
  )


def log_time(
  workdir,
  stage: str,
  wall_s: float,
  name: str = '',
  compiles: Compiles | None = None,
  drawn: figures.Collected | None = None,
) -> None:
  """One JSON line per finished stage: stdout and WORKDIR/timings.jsonl
  (a group run's subject: its own, and `name/stage` on stdout): wall_s,
  peak_rss_gb; with compiles, programs (XLA programs made), from_cache
  (of those, loaded from the persistent cache) and compile_s (the seconds
  they took, within wall_s); with drawn, figures (how many) and figures_s
  (the seconds the stage waited for them at its end, within wall_s); and
  work_s, the rest of wall_s."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB
  row = dict(stage=stage, wall_s=round(wall_s, 2), peak_rss_gb=round(peak, 2))
  if compiles is not None:
    row.update(
      programs=compiles.programs,
      from_cache=compiles.from_cache,
      compile_s=round(compiles.seconds, 2),
    )
  if drawn is not None:
    row.update(figures=drawn.n, figures_s=round(drawn.wait_s, 2))
  if compiles is not None or drawn is not None:
    spent = (compiles.seconds if compiles else 0) + (
      drawn.wait_s if drawn else 0
    )
    row['work_s'] = round(wall_s - spent, 2)
  if files.is_writer():
    shown = dict(row, stage=f'{name}/{stage}') if name else row
    print(json.dumps(shown), flush=True)
    files.append_jsonl(workdir / 'timings.jsonl', row)


def out_of_space(e: BaseException) -> str:
  """'No space left on device' (or the like) if e, or what caused it, is a
  write that failed for want of space; else ''."""
  texts = ('No space left on device', 'File too large', 'Disk quota exceeded')
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (
      errno.ENOSPC,
      errno.EFBIG,
      errno.EDQUOT,
    ):
      return os.strerror(e.errno)
    for t in texts:
      if t in str(e):
        return t
    e = e.__cause__ or e.__context__
  return ''
