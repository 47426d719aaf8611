"""The rdmjax entry point: `rdmjax` = `python -m rdmjax.main`.

  rdmjax --workdir=/tmp/rdmjax                      # the whole pipeline
  rdmjax --workdir=DIR --mode=synth                 # DIR/data/subj01/... only
  rdmjax --config=configs/default.py:tiny --workdir=DIR --mode=train \
    --config.train.steps=100

Modes: the stages of `rdmjax.stages.STAGES`, or `all` (the default:
`rdmjax.stages.PIPELINE`). `rdmjax --help` prints the modes, flags, config
files and main config fields with their defaults (rdmjax.run.cli). Bad input
ends with one line, `rdmjax: error: ...`, and exit code 2: a mistake in the
flags or the config (rdmjax.run.cli.parse_flags) or in the data (InputError).
A --config path that does not exist falls back to the config of that file
name shipped with rdmjax, so `--config=configs/NAME.py` runs from anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from rdmjax import data, files, paths, stages
from rdmjax.errors import InputError
from rdmjax.run import cli, preflight
from rdmjax.run import workdir as workdir_lib
from rdmjax.stages import group


def _define_config():
  """--config, by default the shipped configs/default.py (rdmjax.run.cli).

  ml_collections loads the default config, with the --config.FIELD=VALUE
  of sys.argv, as it defines the flag: a mistyped field would fail this
  import before run() can say so in one line. Then the flag starts with no
  default and run() (rdmjax.run.cli.parse_flags) loads the config and reports.
  """
  text = (
    'Config file, optionally with an argument: configs/default.py:tiny. A '
    'path that does not exist is the shipped config of that file name.'
  )
  try:
    return config_flags.DEFINE_config_file(
      'config', cli.default_config(), text, lock_config=True
    )
  except Exception:  # noqa: BLE001 (reported by run())
    return config_flags.DEFINE_config_file(
      'config', None, text, lock_config=True
    )


_CONFIG = _define_config()
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Where outputs go: a folder or gs://... (required).'
)
_MODE = flags.DEFINE_enum(
  'mode',
  'all',
  ('all', *stages.STAGES),
  'Which stage to run: one of the modes, or all: '
  f'{", ".join(stages.PIPELINE)}.',
)
_DISTRIBUTED = flags.DEFINE_bool(
  'jax_distributed',
  False,
  'Call jax.distributed.initialize() (multi-host TPU VM or SLURM GPU).',
)
_CACHE = flags.DEFINE_string(
  'compilation_cache',
  os.path.join(
    os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
    'rdmjax',
    'xla',
  ),
  "JAX's persistent compilation cache folder: a rerun of the same shapes "
  "loads its programs instead of compiling them ('' = off).",
)
flags.mark_flags_as_required(['workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import jax

  config = _CONFIG.value

  mode = _MODE.value
  group_run = data.population(config) and mode not in (
    'synth',
    'group',
    'bench',
  )
  task = (0, 1)
  if _DISTRIBUTED.value and group_run:
    # Subjects need no collectives: each task runs its share of them as a
    # single-process JAX run on its own devices (see _run_group).
    task = task_identity()
    logging.info('group run: task %d of %d', *task)
  elif _DISTRIBUTED.value:
    # JAX reads JAX_COORDINATOR_ADDRESS itself, the process count and id
    # only as arguments; unset, it finds all three from SLURM, TPU or MPI.
    kw = {
      key: int(os.environ[env])
      for env, key in (
        ('JAX_NUM_PROCESSES', 'num_processes'),
        ('JAX_PROCESS_ID', 'process_id'),
      )
      if os.environ.get(env)
    }
    jax.distributed.initialize(**kw)
  if _CACHE.value:
    jax.config.update(
      'jax_compilation_cache_dir', os.path.expanduser(_CACHE.value)
    )
  logging.info(
    'process %d/%d, devices: %s',
    jax.process_index(),
    jax.process_count(),
    jax.devices(),
  )

  if not _WORKDIR.value.strip():
    print(
      'rdmjax: error: --workdir is empty: name the folder the outputs go '
      'to, e.g. --workdir=/tmp/rdmjax',
      file=sys.stderr,
    )
    sys.exit(2)

  # A local folder or gs://... (etils epath, as Orbax): rdmjax.paths.
  workdir = paths.path(_WORKDIR.value)
  todo = stages.PIPELINE if mode == 'all' else (mode,)
  owner = task[0] == 0 and files.is_writer()  # holds the workdir's state
  try:
    workdir.mkdir(parents=True, exist_ok=True)

    # Inputs checked before any long stage; may add the embed stage.
    config, todo = preflight.plan(config, workdir, todo)
    with workdir_lib.lock(workdir) if owner else contextlib.nullcontext():
      state = 'new'
      if mode not in ('bench', 'group'):
        state = workdir_lib.check_config(workdir, config, remove=owner)
        if owner and state == 'new':  # only a run that starts writes it
          workdir_lib.write_config(workdir, config)
      if group_run:
        _run_group(config, workdir, todo, task, state)
        todo = ()
      for stage in todo:
        if state == 'same' and workdir_lib.done(workdir, stage):
          _reused(workdir, stage)
          continue
        logging.info('stage %s', stage)
        t0 = time.perf_counter()
        stages.run(stage, config, workdir)
        _log_time(workdir, stage, time.perf_counter() - t0)
        if owner:
          workdir_lib.mark_done(workdir, stage, time.perf_counter() - t0)
  except InputError as e:
    print(f'rdmjax: error: {e}', file=sys.stderr)
    sys.exit(2)
  except Exception as e:
    if not (why := _out_of_space(e)):
      raise
    print(
      f'rdmjax: error: a write to {workdir} failed ({why}): free some space '
      '(or raise the quota or file-size limit) and rerun; finished stages '
      'and checkpoints are kept',
      file=sys.stderr,
    )
    sys.exit(2)
  if owner and (workdir / 'report.md').exists():
    print(f'report: {workdir / "report.md"}')
    results = workdir / 'results.json'
    if 'train' in todo and results.exists():
      train = json.loads(results.read_text()).get('train', {})
      print('test pairs:', json.dumps(train.get('test', {})))


def _out_of_space(e: BaseException) -> str:
  """'No space left on device' (or the like) if e, or what caused it, is a
  write that failed for want of space; else ''."""
  import errno

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


def _reused(workdir, stage: str) -> None:
  """The one line that says a stage was not run again."""
  print(
    f'rdmjax: {stage}: reused (finished earlier in {workdir} with this '
    'config; --config.resume=overwrite starts afresh)'
  )


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


def _wait_for(files, what: str, poll_s: float = 2.0) -> None:
  """Waits until every file exists, saying every minute which are left."""
  last = time.monotonic()
  while left := [f for f in files if not f.exists()]:
    if time.monotonic() - last > 60:
      logging.info('waiting for %s: %s', what, [str(f) for f in left])
      last = time.monotonic()
    time.sleep(poll_s)


def _run_group(config, workdir, todo, task=(0, 1), state='new') -> None:
  """`data.subjects`: the stages for each subject into WORKDIR/subjNN (a
  failed subject is reported and the others go on), then the group
  section (`rdmjax.stages.group`).

  state 'same' (`rdmjax.run.workdir.check_config`): a subject's finished
  stages are reused.

  task = (k, n): one of n tasks of a multi-host launch runs subjects k,
  k + n, ... on its own devices, as an ordinary single-process JAX run
  (subjects need no collectives); task 0 then waits for the others' done
  files in WORKDIR/group_tasks/ and writes the group section.
  """

  me, count = task
  names = data.subjects(config)
  if not config.data.root:  # the population, written once
    with data._host_lock(data.data_root(config, workdir)):
      stages.run('synth', config, workdir)
  done = workdir / 'group_tasks'
  done.mkdir(parents=True, exist_ok=True)
  mine = done / f'task{me}_of_{count}.done'
  if mine.exists():
    mine.unlink()
  for name in names[me::count]:
    c = group._subject_config(config, workdir, name)
    err = workdir / name / 'error.txt'
    try:
      for stage in todo:
        if state == 'same' and workdir_lib.done(workdir / name, stage):
          _reused(workdir / name, stage)
          continue
        logging.info('%s: stage %s', name, stage)
        t0 = time.perf_counter()
        stages.run(stage, c, workdir / name)
        _log_time(workdir / name, stage, time.perf_counter() - t0, name)
        workdir_lib.mark_done(workdir / name, stage, time.perf_counter() - t0)
      if err.exists():
        err.unlink()
    except Exception as e:  # noqa: BLE001 (reported; the others go on)
      why = f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'
      print(f'rdmjax: {name} failed: {why}', file=sys.stderr)
      logging.exception('%s failed', name)
      err.parent.mkdir(parents=True, exist_ok=True)
      err.write_text(why + '\n')
  mine.write_text(json.dumps(names[me::count]) + '\n')
  if me != 0:
    return
  _wait_for(
    [done / f'task{k}_of_{count}.done' for k in range(count)],
    'the other tasks of the group run',
  )
  t0 = time.perf_counter()
  stages.run('group', config, workdir)
  _log_time(workdir, 'group', time.perf_counter() - t0)


def _log_time(workdir, stage: str, wall_s: float, name: str = '') -> None:
  """One JSON line per finished stage: stdout and WORKDIR/timings.jsonl
  (a group run's subject: its own, and `name/stage` on stdout)."""
  import resource

  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB
  row = dict(stage=stage, wall_s=round(wall_s, 2), peak_rss_gb=round(peak, 2))
  if files.is_writer():
    shown = dict(row, stage=f'{name}/{stage}') if name else row
    print(json.dumps(shown), flush=True)
    files.append_jsonl(workdir / 'timings.jsonl', row)


def run() -> None:
  """Console-script entry (`rdmjax`), as `python -m rdmjax.main`: --help and
  one-line errors for the flags and the config (rdmjax.run.cli.parse_flags)."""
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
