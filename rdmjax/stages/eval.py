"""`--mode=eval`: scores a saved checkpoint on the test pairs again.

Which checkpoint: `config.ckpt.eval_step` ('best', 'latest' or a step);
'best' and 'latest' fall back to the newest readable step if the chosen one
is damaged, a step number does not. Writes results.json's `eval` entry and
the test figures (eval_test_*.png). Scores come with their intervals and
baselines on the same pairs, as the train stage's
(`rdmjax.stages.train.test_scores`).
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from absl import logging

from rdmjax import checkpoint, evaluate, paths, report, train
from rdmjax.errors import InputError
from rdmjax.report import train_plots


def _restore(config, workdir: Path, prep, which: str):
  """(state, meta, step) of the checkpoint `which` names."""
  if not (workdir / 'ckpt').is_dir():
    raise InputError(
      f'no checkpoint in {workdir / "ckpt"}: train first with --mode=train'
    )
  ck = config.ckpt
  mngr = checkpoint.manager(
    workdir / 'ckpt', ck.every, ck.keep, ck.keep_best, read_only=True
  )
  step = checkpoint.pick_step(mngr, which)
  if step is None:
    raise InputError(
      f'no finished checkpoint in {workdir / "ckpt"}: train first'
    )
  want = prep.data.meta
  if which.strip().isdigit():
    state, meta = checkpoint.restore(mngr, step, prep.abstract, want)
    return state, meta, step
  fallback = [step] + sorted(s for s in mngr.all_steps() if s != step)[::-1]
  return checkpoint.restore_newest(mngr, prep.abstract, want, fallback)


def run(config, workdir: str | Path, which: str | None = None) -> dict:
  """Scores the checkpoint; returns {'step', 'val_spearman', 'test'}."""
  workdir = paths.path(workdir)
  prep = train.prepare(config, workdir)
  which = str(config.ckpt.get('eval_step', 'best') if which is None else which)
  state, meta, step = _restore(config, workdir, prep, which)
  eval_fn = evaluate.make_eval_fn(prep.graphdef, config, prep.mesh)
  test, mats, tp = evaluate.score_test(
    eval_fn, state['params'], prep.device_data, prep.data, config, prep.mesh
  )
  from rdmjax.stages import train as train_stage

  scored = train_stage.test_scores(
    config, types.SimpleNamespace(test_pairs=tp, data=prep.data)
  )
  out: dict[str, Any] = dict(
    step=step,
    val_spearman=meta.get('val_spearman'),
    test=test,
    scores=scored['scores'],
  )
  figs = {}
  if mats is not None:
    figs = train_plots.test_figures(mats, test, workdir / 'figures', 'eval')
  report.update_results(workdir, 'eval', dict(out, figures=figs))
  logging.info('eval: %s', out)
  return out
