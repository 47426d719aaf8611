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
import logging as std_logging
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from rdmjax import data, files, paths, stages
from rdmjax.errors import InputError
from rdmjax.report import plots
from rdmjax.run import cli, group, pipeline, preflight
from rdmjax.run import workdir as workdir_lib


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
_VECTOR = flags.DEFINE_string(
  'vector_figures',
  None,
  'Vector copies written beside each PNG figure: pdf, svg, both '
  '(comma-separated) or none; default $RDMJAX_VECTOR_FIGURES, else none. '
  '--mode=report makes them for a finished run.',
)
flags.mark_flags_as_required(['workdir'])


def _distributed(group_run: bool) -> tuple[int, int]:
  """--jax_distributed: this task's (index, count) in a group run (subjects
  need no collectives: `rdmjax.run.group`), else jax.distributed."""
  if group_run:
    task = group.task_identity()
    logging.info('group run: task %d of %d', *task)
    return task
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
  return 0, 1


def _quiet_logs() -> None:
  """Without --verbosity (-v) on the command line, INFO logs stay hidden:
  rdmjax's own (the stage lines are printed) and third-party ones such as
  fontTools' font subsetting, matplotlib's and orbax's. Warnings stay."""
  if flags.FLAGS['verbosity'].present:
    return
  logging.set_verbosity(logging.WARNING)
  std_logging.getLogger().setLevel(std_logging.WARNING)


def _fail(message: str) -> None:
  # A failed write of orbax's leaves asyncio futures whose exception asyncio
  # reports when they are collected, which can be after this line, at exit:
  # the one line that names the problem must stay the last.
  std_logging.getLogger('asyncio').setLevel(std_logging.CRITICAL)
  print(f'rdmjax: error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config, mode = _CONFIG.value, _MODE.value
  group_run = data.population(config) and mode not in (
    'synth',
    'group',
    'bench',
    'report',
  )
  task = _distributed(group_run) if _DISTRIBUTED.value else (0, 1)
  _quiet_logs()
  if _VECTOR.value is not None:
    formats = [f.strip().lower() for f in _VECTOR.value.split(',')]
    formats = [f for f in formats if f]
    plots.VECTOR_FORMATS = () if formats == ['none'] else tuple(formats)
  if _CACHE.value:
    cache = os.path.expanduser(_CACHE.value)
    jax.config.update('jax_compilation_cache_dir', cache)
    # Every program of a run is kept, not only those that took over a
    # second: a rerun of the same shapes then compiles (almost) nothing.
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  logging.info(
    'process %d/%d, devices: %s',
    jax.process_index(),
    jax.process_count(),
    jax.devices(),
  )
  if not _WORKDIR.value.strip():
    _fail(
      '--workdir is empty: name the folder the outputs go to, e.g. '
      '--workdir=/tmp/rdmjax'
    )
  # A local folder or gs://... (etils epath, as Orbax): rdmjax.paths.
  workdir = paths.path(_WORKDIR.value)
  todo = stages.PIPELINE if mode == 'all' else (mode,)
  owner = task[0] == 0 and files.is_writer()  # holds the workdir's state
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    plots.vector_formats()  # a bad --vector_figures stops here
    # Inputs checked before any long stage; may add the embed stage.
    if mode != 'report':
      config, todo = preflight.plan(config, workdir, todo)
    with workdir_lib.lock(workdir) if owner else contextlib.nullcontext():
      state = 'new'
      if mode not in ('bench', 'group', 'report'):
        state = workdir_lib.check_config(workdir, config, remove=owner)
        if owner and state == 'new':  # only a run that starts writes it
          workdir_lib.write_config(workdir, config)
      if group_run:
        group.run_group(config, workdir, todo, task, state)
      else:
        mark = owner and mode != 'report'
        pipeline.run_stages(config, workdir, todo, state, mark=mark)
  except InputError as e:
    _fail(str(e))
  except Exception as e:
    if not (why := pipeline.out_of_space(e)):
      raise
    _fail(
      f'a write to {workdir} failed ({why}): free some space (or raise the '
      'quota or file-size limit) and rerun; finished stages and checkpoints '
      'are kept'
    )
  if owner and (workdir / 'report.md').exists():
    print(f'report: {workdir / "report.md"}')
    results = workdir / 'results.json'
    if 'train' in todo and not group_run and results.exists():
      train = json.loads(results.read_text()).get('train', {})
      print('test pairs:', json.dumps(train.get('test', {})))


def run() -> None:
  """Console-script entry (`rdmjax`), as `python -m rdmjax.main`: --help and
  one-line errors for the flags and the config (rdmjax.run.cli.parse_flags)."""
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  run()
