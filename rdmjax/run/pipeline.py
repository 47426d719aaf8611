"""Running stages on a workdir: one line per stage, its time, its state.

`run_stages` runs `todo` in turn, reusing what an identical config finished
(`rdmjax.run.workdir`), and logs each stage's wall time and peak memory as
one JSON line (stdout and WORKDIR/timings.jsonl).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import time
from collections.abc import Sequence

from absl import logging

from rdmjax import files, stages
from rdmjax.run import workdir as workdir_lib


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
  for stage in todo:
    if state == 'same' and workdir_lib.done(workdir, stage):
      reused(workdir, stage)
      continue
    logging.info('%sstage %s', f'{name}: ' if name else '', stage)
    t0 = time.perf_counter()
    stages.run(stage, config, workdir)
    log_time(workdir, stage, time.perf_counter() - t0, name)
    if mark:
      workdir_lib.mark_done(workdir, stage, time.perf_counter() - t0)


def reused(workdir, stage: str) -> None:
  """The one line that says a stage was not run again."""
  print(
    f'rdmjax: {stage}: reused (finished earlier in {workdir} with this '
    'config; --config.resume=overwrite starts afresh)'
  )


def log_time(workdir, stage: str, wall_s: float, name: str = '') -> None:
  """One JSON line per finished stage: stdout and WORKDIR/timings.jsonl
  (a group run's subject: its own, and `name/stage` on stdout)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB
  row = dict(stage=stage, wall_s=round(wall_s, 2), peak_rss_gb=round(peak, 2))
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
