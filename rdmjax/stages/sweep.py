"""`--mode=sweep`: chooses a setting on validation pairs only.

  rdmjax --mode=sweep --workdir=DIR --config.sweep.param=model.hidden \
    --config.sweep.grid="((256,), (512,), (512, 512))"

Trains one run per value of `config.sweep.param` into
WORKDIR/sweep/<param>=<value>/, each on the same image split, and compares
them by their best validation Spearman; no test pair is scored while
choosing. Every run's best checkpoint is then scored on the same validation
pairs with the same bootstrap draws over the validation images: each gets
a 95% interval, and the chosen run minus each other run a paired one. Then
the chosen run's best checkpoint is scored once on the test pairs, with its
interval and baselines (`rdmjax.stages.eval`). Writes results.json's
`sweep` entry and report.md's section.

`sweep.compare_on_test=True` is for reporting a comparison of conditions
(e.g. losses), not for choosing: after the choice, every run is scored on
the chosen run's test pairs, beside the same ceiling and baselines, with
each run minus the first grid value as a paired difference (same pairs,
same draws).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from rdmjax import paths, report
from rdmjax.errors import InputError
from rdmjax.report import sweep as sweep_report
from rdmjax.rsa import inference
from rdmjax.stages import eval as eval_stage
from rdmjax.training import baselines, scoring
from rdmjax.training import evaluation as evaluate
from rdmjax.training import loop as train


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
  val = _paired(config, workdir, param, scored, 'val', best['name'])
  chosen = _with(config, param, best['value'])
  test = eval_stage.run(chosen, workdir / 'sweep' / best['name'], 'best')
  res = dict(param=param, runs=runs, chosen=best['name'], val=val, test=test)
  if config.sweep.get('compare_on_test', False):
    res['test_comparison'] = _paired(
      config, workdir, param, scored, 'test', scored[0]['name']
    )
  report.update_results(workdir, 'sweep', res)
  report.write_section(workdir, 'sweep', sweep_report.markdown(res))
  return res


def _predictions(config, workdir, param, runs, split: str):
  """Each run's best checkpoint on the split's pairs: (EvalSet, prep of
  the last run, name -> [P] predictions). All runs share the image split,
  so their pairs are the same (checked)."""
  preds, es, prep = {}, None, None
  for r in runs:
    c = _with(config, param, r['value'])
    d = workdir / 'sweep' / r['name']
    prep = train.prepare(c, d)
    state, _, _ = scoring.restore(c, d, prep, 'best')
    fn = evaluate.make_eval_fn(prep.graphdef, c, prep.mesh)
    e = evaluate.eval_set(prep.data, split, c, prep.mesh)
    if es is not None and not (
      np.array_equal(e.i, es.i) and np.array_equal(e.j, es.j)
    ):
      raise InputError(f'{r["name"]}: other {split} pairs than the others')
    es = e
    preds[r['name']] = evaluate.predict(
      fn, state['params'], prep.device_data, e
    )
  return es, prep, preds


def _paired(config, workdir, param, runs, split: str, ref: str) -> dict:
  """Every run on the same pairs of `split` with the same bootstrap draws
  over its images: Spearman with a 95% interval, and each run minus `ref`
  (paired). On 'test', beside the ceiling and baselines of those pairs."""
  es, prep, preds = _predictions(config, workdir, param, runs, split)
  ia, ib = np.searchsorted(es.images, es.i), np.searchsorted(es.images, es.j)
  extra = {}
  if split == 'test':
    base = baselines.test_pairs(
      prep.data,
      es.images,
      es.i,
      es.j,
      config.pairs.metric,
      int(config.seed),
      {},
    )
    keep = set(config.train.baselines) | {'ceiling'}
    extra = {k: v for k, v in base.items() if k in keep}
  got = inference.bootstrap_pair_scores(
    ia,
    ib,
    {**preds, **extra},
    es.target,
    len(es.images),
    n_boot=max(int(config.train.bootstrap), 1),
    seed=int(config.seed),
    ceiling='ceiling' if 'ceiling' in extra else None,
  )

  def brief(d):
    return {k: v for k, v in d.items() if k != 'samples'}

  out = {
    'split': split,
    'n_pairs': int(len(es.i)),
    'n_images': int(len(es.images)),
    'reference': ref,
    'scores': {
      name: {st: brief(d) for st, d in g.items()} for name, g in got.items()
    },
    'minus_reference': {
      name: brief(inference.paired_difference(got, name, ref))
      for name in preds
      if name != ref
    },
  }
  return out
