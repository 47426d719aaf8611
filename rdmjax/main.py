"""The rdmjax entry point: `rdmjax` = `python -m rdmjax.main`.

  rdmjax --workdir=/tmp/rdmjax                      # the whole pipeline
  rdmjax --workdir=DIR --mode=synth                 # DIR/data/subj01/... only
  rdmjax --config=configs/default.py:tiny --workdir=DIR --mode=train \
    --config.train.steps=100

Modes: the stages of `rdmjax.stages.STAGES`, or `all` (the default:
`rdmjax.stages.PIPELINE`). Bad input ends with one line and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from rdmjax import stages
from rdmjax.errors import InputError

_CONFIG = config_flags.DEFINE_config_file(
  'config',
  str(Path(__file__).resolve().parent.parent / 'configs' / 'default.py'),
  'Config file, optionally with an argument: configs/default.py:tiny',
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where outputs go.')
_MODE = flags.DEFINE_enum(
  'mode', 'all', ('all', *stages.STAGES), 'Which stage to run.'
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

  from rdmjax import report

  if _DISTRIBUTED.value:
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
  config = _CONFIG.value
  from rdmjax import paths

  # A local folder or gs://... (etils epath, as Orbax): rdmjax.paths.
  workdir = paths.path(_WORKDIR.value)
  workdir.mkdir(parents=True, exist_ok=True)
  report.atomic_write(
    workdir / 'config.json', config.to_json_best_effort(indent=2)
  )
  mode = _MODE.value
  todo = stages.PIPELINE if mode == 'all' else (mode,)
  from rdmjax import data

  try:
    if data.population(config) and mode not in ('synth', 'group', 'bench'):
      _run_group(config, workdir, todo)
      todo = ()
    for stage in todo:
      logging.info('stage %s', stage)
      t0 = time.perf_counter()
      stages.run(stage, config, workdir)
      _log_time(workdir, stage, time.perf_counter() - t0)
  except InputError as e:
    print(f'rdmjax: error: {e}', file=sys.stderr)
    sys.exit(2)
  if report.is_writer() and (workdir / 'report.md').exists():
    print(f'report: {workdir / "report.md"}')
    results = workdir / 'results.json'
    if 'train' in todo and results.exists():
      train = json.loads(results.read_text()).get('train', {})
      print('test pairs:', json.dumps(train.get('test', {})))


def _run_group(config, workdir, todo) -> None:
  """`data.subjects`: the stages for each subject into WORKDIR/subjNN (a
  failed subject is reported and the others go on), then the group
  section (`rdmjax.stages.group`)."""
  from rdmjax import data, report
  from rdmjax.stages import group

  names = data.subjects(config)
  if not config.data.root:
    stages.run('synth', config, workdir)  # the population, written once
  failed = {}
  for name in names:
    c = group._subject_config(config, workdir, name)
    try:
      for stage in todo:
        logging.info('%s: stage %s', name, stage)
        t0 = time.perf_counter()
        stages.run(stage, c, workdir / name)
        _log_time(workdir, f'{name}/{stage}', time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 (reported; the others go on)
      failed[name] = f'{type(e).__name__}: {str(e).splitlines()[0][:300]}'
      print(f'rdmjax: {name} failed: {failed[name]}', file=sys.stderr)
      logging.exception('%s failed', name)
  report.update_results(workdir, 'group', {'failed': failed})
  t0 = time.perf_counter()
  stages.run('group', config, workdir)
  _log_time(workdir, 'group', time.perf_counter() - t0)


def _log_time(workdir, stage: str, wall_s: float) -> None:
  """One JSON line per finished stage: stdout and WORKDIR/timings.jsonl."""
  import resource

  from rdmjax import report

  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB
  row = dict(stage=stage, wall_s=round(wall_s, 2), peak_rss_gb=round(peak, 2))
  if report.is_writer():
    print(json.dumps(row), flush=True)
    report.append_jsonl(workdir / 'timings.jsonl', row)


def run() -> None:
  """Console-script entry (`rdmjax`)."""
  app.run(main)


if __name__ == '__main__':
  run()
