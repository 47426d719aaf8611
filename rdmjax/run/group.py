"""A group run (`data.subjects`): each subject's stages, then the group.

Subjects need no collectives: each task of a multi-host launch runs its
share of them as an ordinary single-process JAX run on its own devices, and
task 0 waits for the others' done files before writing the group section
(`rdmjax.stages.group`).
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import logging

from rdmjax import data, stages
from rdmjax.run import pipeline


def task_identity() -> tuple[int, int]:
  """(index, count) of this task among those a launcher started: from
  JAX_PROCESS_ID / JAX_NUM_PROCESSES (launch/gpu.sh), SLURM, Open MPI or a
  TPU VM's worker variables; (0, 1) when none is set."""
  env = os.environ
  for rank, size in (
    ('JAX_PROCESS_ID', 'JAX_NUM_PROCESSES'),
    ('SLURM_PROCID', 'SLURM_NTASKS'),
    ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE'),
  ):
    if env.get(rank) and env.get(size):
      return int(env[rank]), int(env[size])
  if env.get('TPU_WORKER_ID') and env.get('TPU_WORKER_HOSTNAMES'):
    hosts = env['TPU_WORKER_HOSTNAMES'].split(',')
    return int(env['TPU_WORKER_ID']), len(hosts)
  return 0, 1


def wait_for(files, what: str, poll_s: float = 2.0) -> None:
  """Waits until every file exists, saying every minute which are left."""
  last = time.monotonic()
  while left := [f for f in files if not f.exists()]:
    if time.monotonic() - last > 60:
      logging.info('waiting for %s: %s', what, [str(f) for f in left])
      last = time.monotonic()
    time.sleep(poll_s)


def _run_subject(config, workdir, name, todo, state) -> None:
  """One subject's stages into WORKDIR/NAME; a failure is reported (and
  left in NAME/error.txt) and the other subjects go on."""
  c, sub = data.subject_run(config, workdir, name)
  err = sub / 'error.txt'
  try:
    pipeline.run_stages(c, sub, todo, state, mark=True, name=name)
    if err.exists():
      err.unlink()
  except Exception as e:  # noqa: BLE001 (reported; the others go on)
    why = f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'
    print(f'rdmjax: {name} failed: {why}', file=sys.stderr)
    logging.exception('%s failed', name)
    err.parent.mkdir(parents=True, exist_ok=True)
    err.write_text(why + '\n')


def run_group(config, workdir, todo, task=(0, 1), state='new') -> None:
  """`data.subjects`: the stages for each subject into WORKDIR/subjNN,
  then the group section.

  state 'same' (`rdmjax.run.workdir.check_config`): a subject's finished
  stages are reused.

  task = (k, n): one of n tasks of a multi-host launch runs subjects k,
  k + n, ...; task 0 then waits for the others' done files in
  WORKDIR/group_tasks/ and writes the group section.
  """
  me, count = task
  names = data.subjects(config)
  if not config.data.root:  # the population, written once
    with data.host_lock(data.data_root(config, workdir)):
      stages.run('synth', config, workdir)
  done = workdir / 'group_tasks'
  done.mkdir(parents=True, exist_ok=True)
  mine = done / f'task{me}_of_{count}.done'
  if mine.exists():
    mine.unlink()
  for name in names[me::count]:
    _run_subject(config, workdir, name, todo, state)
  mine.write_text(json.dumps(names[me::count]) + '\n')
  if me != 0:
    return
  wait_for(
    [done / f'task{k}_of_{count}.done' for k in range(count)],
    'the other tasks of the group run',
  )
  pipeline.run_stages(config, workdir, ('group',), mark=False)
