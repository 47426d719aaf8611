"""`--mode=sweep`: chooses a setting on validation pairs only.

  rdmjax --mode=sweep --workdir=DIR --config.sweep.param=model.hidden \
    --config.sweep.grid="((256,), (512,), (512, 512))"

Trains one run per value of `config.sweep.param` into
WORKDIR/sweep/<param>=<value>/, each on the same image split, and compares
them by their best validation Spearman; no test pair is scored while
choosing. Then the chosen run's best checkpoint is scored once on the test
pairs, with its interval and baselines (`rdmjax.stages.eval`). Writes
results.json's `sweep` entry and report.md's section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from absl import logging

from rdmjax import paths, report, train
from rdmjax.errors import InputError


def _values(config) -> tuple[str, list]:
  sw = config.sweep
  param, values = str(sw.param), list(sw.grid)
  if '.' not in param or len(values) < 2:
    raise InputError(
      f'sweep.param={param!r}, sweep.grid={values!r}: name a section.field'
      ' and give at least two values'
    )
  sec, field = param.split('.', 1)
  if sec not in config or field not in config[sec]:
    raise InputError(f'sweep.param={param!r}: no such config field')
  return param, values


def _with(config, param: str, value):
  sec, field = param.split('.', 1)
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c[sec][field] = (
      type(c[sec][field])(value)
      if not isinstance(value, (list, tuple))
      else tuple(value)
    )
    c.train.run_leaked = False
  return c


def run(config, workdir: str | Path) -> dict[str, Any]:
  """Runs the sweep; returns the results.json 'sweep' entry."""
  from rdmjax.stages import eval as eval_stage

  workdir = paths.path(workdir)
  param, values = _values(config)
  runs = []
  for v in values:
    name = f'{param}={v}'.replace(' ', '')
    c = _with(config, param, v)
    r = train.train(
      c, workdir / 'sweep' / name, data_dir=workdir, score_test=False
    )
    runs.append(
      dict(value=v, name=name, val_spearman=r.val_best, best_step=r.best_step)
    )
    logging.info('sweep %s: validation Spearman %s', name, r.val_best)
  scored = [r for r in runs if r['val_spearman'] is not None]
  if not scored:
    raise InputError('no sweep run reached a validation score')
  best = max(scored, key=lambda r: r['val_spearman'])
  chosen = _with(config, param, best['value'])
  test = eval_stage.run(chosen, workdir / 'sweep' / best['name'], 'best')
  res = dict(param=param, runs=runs, chosen=best['name'], test=test)
  report.update_results(workdir, 'sweep', res)
  report.write_section(workdir, 'sweep', _markdown(res))
  return res


def _markdown(res: dict[str, Any]) -> str:
  rows = [
    [
      r['name'] + (' (chosen)' if r['name'] == res['chosen'] else ''),
      '-' if r['val_spearman'] is None else r['val_spearman'],
      r['best_step'],
    ]
    for r in res['runs']
  ]
  m = res['test']['scores']['model']['spearman']
  return '\n'.join(
    [
      f'## Sweep of `{res["param"]}`: chosen on validation pairs only',
      '',
      report.md_table(['value', 'best validation Spearman', 'step'], rows),
      f'Test pairs, scored once, for the chosen setting only: Spearman '
      f'{m["value"]:.3f} [{m["low"]:.3f}, {m["high"]:.3f}] (95% interval, '
      'bootstrap over test images).',
      '',
    ]
  )
