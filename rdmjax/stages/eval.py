"""`--mode=eval`: scores a saved checkpoint on every test pair again.

Which checkpoint: `config.ckpt.eval_step` ('best', 'latest' or a step).
Writes results.json's `eval` entry and the test figures (eval_test_*.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from absl import logging

from rdmjax import evaluate, report
from rdmjax.report import train_plots


def run(config, workdir: str | Path, which: str | None = None) -> dict:
  """Scores the checkpoint; returns {'step', 'val_spearman', 'test'}."""
  workdir = Path(workdir)
  res = evaluate.evaluate(config, workdir, which)
  out: dict[str, Any] = dict(
    step=res.step, val_spearman=res.val_spearman, test=res.test
  )
  figs = {}
  if res.mats is not None:
    figs = train_plots.test_figures(
      res.mats, res.test, workdir / 'figures', 'eval'
    )
  report.update_results(workdir, 'eval', dict(out, figures=figs))
  logging.info('eval: %s', out)
  return out
