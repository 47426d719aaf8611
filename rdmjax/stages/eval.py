"""`--mode=eval`: scores a saved checkpoint on the test pairs again.

Which checkpoint: `config.ckpt.eval_step` ('best', 'latest' or a step);
'best' and 'latest' fall back to the newest readable step if the chosen one
is damaged, a step number does not. Scores come with their intervals and
baselines on the same pairs, as the train stage's
(`rdmjax.stages.train.test_scores`). Writes results.json's `eval` entry,
report.md's `eval` section (the checkpoint, its validation Spearman, the
score table, the figures), the test figures (figures/eval_test_*.png), the
test scores as TensorBoard scalars at the checkpoint's step
(WORKDIR/tensorboard, `rdmjax.training.metric_writer`), and one summary line on
stdout.
"""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Any

from absl import logging

from rdmjax import files, paths, report
from rdmjax.errors import InputError
from rdmjax.report import train_plots
from rdmjax.stages import train as train_stage
from rdmjax.training import checkpoints as checkpoint
from rdmjax.training import evaluation as evaluate
from rdmjax.training import loop as train
from rdmjax.training import metric_writer


def _restore(config, workdir: Path, prep, which: str):
  """(state, meta, step) of the checkpoint `which` names (for 'best' and
  'latest', the newest readable step if that one is damaged)."""
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
  """Scores the checkpoint; writes and returns results.json's 'eval' entry:
  {'which', 'step', 'val_spearman', 'test', 'scores', 'n_images',
  'n_pairs', 'bootstrap', 'figures'}."""
  workdir = paths.path(workdir)
  prep = train.prepare(config, workdir)
  which = str(config.ckpt.get('eval_step', 'best') if which is None else which)
  state, meta, step = _restore(config, workdir, prep, which)
  eval_fn = evaluate.make_eval_fn(prep.graphdef, config, prep.mesh)
  test, mats, tp = evaluate.score_test(
    eval_fn, state['params'], prep.device_data, prep.data, config, prep.mesh
  )
  scored = train_stage.test_scores(
    config, types.SimpleNamespace(test_pairs=tp, data=prep.data)
  )
  val = meta.get('val_spearman')
  out: dict[str, Any] = dict(
    which=which,
    step=int(step),
    # None where the checkpoint was saved without a finite validation score.
    val_spearman=None if val is None or not math.isfinite(val) else float(val),
    test=test,
    scores=scored['scores'],
    n_images=int(scored['n_images']),
    n_pairs=int(scored['n_pairs']),
    bootstrap=int(config.train.bootstrap),
    figures={},
  )
  if mats is not None:
    out['figures'] = train_plots.test_figures(
      mats, test, workdir / 'figures', 'eval'
    )
  report.update_results(workdir, 'eval', out)
  with metric_writer.for_run(config, workdir) as tb:
    tb.scalars(step, metric_writer.eval_scalars(out))
  report.write_section(workdir, 'eval', markdown(out, config))
  logging.info('eval: %s', out)
  if files.is_writer():
    print(summary(out), flush=True)
  return out


def _val(v: float | None) -> str:
  return '-' if v is None or not math.isfinite(v) else f'{v:.3f}'


def summary(out: dict[str, Any]) -> str:
  """The stdout line: checkpoint, test Spearman [95% interval], ceiling."""
  model = out['scores']['model']
  line = (
    f'eval: checkpoint step {out["step"]} ({out["which"]}; validation '
    f'Spearman {_val(out["val_spearman"])}): test Spearman '
    f'{train_stage._ci(model["spearman"])} on {out["n_pairs"]:,} pairs of '
    f'{out["n_images"]} images'
  )
  if 'fraction_of_ceiling' in model:
    line += f', {train_stage._ci(model["fraction_of_ceiling"])} of ceiling'
  return line


def markdown(out: dict[str, Any], config) -> str:
  """report.md's eval section."""
  lines = [
    f'## Evaluation: checkpoint step {out["step"]} on the test pairs',
    '',
    f'`--mode=eval` restored step {out["step"]} of `ckpt/` '
    f'(ckpt.eval_step `{out["which"]}`), saved with validation Spearman '
    f'{_val(out["val_spearman"])}, and scored model `{config.model.name}` '
    f'(ROI `{config.data.roi}`, target `{config.pairs.metric}`) on '
    f'{train_stage._pairs_cell(out["test"])} test pairs of '
    f'{out["n_images"]} test images. Every score: value on the test pairs '
    f'[95% interval, bootstrap over test images, {out["bootstrap"]} '
    'draws], each baseline on the same pairs; "of ceiling" is the '
    "Spearman's fraction of the ceiling's.",
    '',
    train_stage._score_table(out['scores']),
  ]
  for key, title in (
    ('test_rdms', 'True vs predicted RDM of the test images (eval)'),
    ('test_scatter', 'Predicted vs true, test pairs (eval)'),
  ):
    if key in out['figures']:
      lines += [f'![{title}]({out["figures"][key]})', '']
  return '\n'.join(lines)
