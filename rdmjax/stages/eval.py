"""`--mode=eval`: scores a saved checkpoint on the test pairs again.

Which checkpoint: `config.ckpt.eval_step` ('best', 'latest' or a step);
'best' and 'latest' fall back to the newest readable step if the chosen one
is damaged, a step number does not. Scores come with their intervals and
baselines on the same pairs, as the train stage's
(`rdmjax.training.scoring.test_scores`). Writes results.json's `eval` entry,
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
from rdmjax.report import eval as eval_report
from rdmjax.report import train_plots
from rdmjax.training import evaluation as evaluate
from rdmjax.training import loop as train
from rdmjax.training import metric_writer, scoring


def run(config, workdir: str | Path, which: str | None = None) -> dict:
  """Scores the checkpoint; writes and returns results.json's 'eval' entry:
  {'which', 'step', 'val_spearman', 'test', 'scores', 'n_images',
  'n_pairs', 'bootstrap', 'figures'}."""
  workdir = paths.path(workdir)
  prep = train.prepare(config, workdir)
  which = str(config.ckpt.get('eval_step', 'best') if which is None else which)
  state, meta, step = scoring.restore(config, workdir, prep, which)
  eval_fn = evaluate.make_eval_fn(prep.graphdef, config, prep.mesh)
  test, mats, tp = evaluate.score_test(
    eval_fn, state['params'], prep.device_data, prep.data, config, prep.mesh
  )
  scored = scoring.test_scores(
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
  report.write_section(workdir, 'eval', eval_report.markdown(out, config))
  logging.info('eval: %s', out)
  if files.is_writer():
    print(eval_report.summary(out), flush=True)
  return out
