"""The rdmjax entry point: `rdmjax` = `python -m rdmjax.main`.

  rdmjax --workdir=/tmp/rdmjax                      # the whole pipeline
  rdmjax --workdir=DIR --mode=synth                 # DIR/subj01/... only
  rdmjax --config=configs/mlp.py:tiny --workdir=DIR --mode=train \
    --config.train.steps=100

Modes: synth, data, rdm, embed, train, eval, bench, or (default) all of
data, rdm, train in turn. Bad input ends with one line and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from rdmjax.errors import InputError

MODES = ('all', 'synth', 'data', 'rdm', 'embed', 'train', 'eval', 'bench')

_CONFIG = config_flags.DEFINE_config_file(
  'config',
  str(Path(__file__).resolve().parent.parent / 'configs' / 'default.py'),
  'Config file, optionally with an argument: configs/mlp.py:tiny',
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where outputs go.')
_MODE = flags.DEFINE_enum('mode', 'all', MODES, 'Which stage to run.')
_DISTRIBUTED = flags.DEFINE_bool(
  'jax_distributed',
  False,
  'Call jax.distributed.initialize() (multi-host TPU VM or SLURM GPU).',
)
flags.mark_flags_as_required(['workdir'])


def _stage(mode: str, config, workdir: Path) -> None:
  # Stages import lazily: `--mode=synth` needs no model code.
  if mode == 'synth':
    from rdmjax.data import synthetic

    path = synthetic.write_subject(
      workdir, config.data.subject, **dict(config.data.synthetic)
    )
    logging.info('wrote synthetic subject %s', path)
  elif mode == 'data':
    from rdmjax import summary

    summary.run(config, workdir)
  elif mode == 'rdm':
    from rdmjax import analysis

    analysis.run(config, workdir)
  elif mode == 'embed':
    from rdmjax import embed

    embed.run(config, workdir)
  elif mode == 'train':
    from rdmjax import train

    train.train_and_evaluate(config, workdir)
  elif mode == 'eval':
    from rdmjax import train

    train.evaluate(config, workdir)
  elif mode == 'bench':
    from rdmjax import bench

    bench.run(config, workdir)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import jax

  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  logging.info(
    'process %d/%d, devices: %s',
    jax.process_index(),
    jax.process_count(),
    jax.devices(),
  )
  config = _CONFIG.value
  workdir = Path(_WORKDIR.value).expanduser()
  workdir.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2))
  mode = _MODE.value
  try:
    stages = ('data', 'rdm', 'train') if mode == 'all' else (mode,)
    for stage in stages:
      logging.info('stage %s', stage)
      _stage(stage, config, workdir)
  except InputError as e:
    print(f'rdmjax: error: {e}', file=sys.stderr)
    sys.exit(2)
  if jax.process_index() == 0 and (workdir / 'report.md').exists():
    print(f'report: {workdir / "report.md"}')
    results = workdir / 'results.json'
    if 'train' in stages and results.exists():
      train = json.loads(results.read_text()).get('train', {})
      print('test pairs:', json.dumps(train.get('test', {})))


def run() -> None:
  """Console-script entry (`rdmjax`)."""
  app.run(main)


if __name__ == '__main__':
  run()
