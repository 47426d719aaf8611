"""report.md's eval section and the eval stage's stdout line, as functions
of results.json's 'eval' entry."""

from __future__ import annotations

import math
from typing import Any

from rdmjax.report import train as train_report


def _val(v: float | None) -> str:
  return '-' if v is None or not math.isfinite(v) else f'{v:.3f}'


def summary(out: dict[str, Any]) -> str:
  """The stdout line: checkpoint, test Spearman [95% interval], ceiling."""
  model = out['scores']['model']
  line = (
    f'eval: checkpoint step {out["step"]} ({out["which"]}; validation '
    f'Spearman {_val(out["val_spearman"])}): test Spearman '
    f'{train_report.with_interval(model["spearman"])} on {out["n_pairs"]:,} pairs of '
    f'{out["n_images"]} images'
  )
  if 'fraction_of_ceiling' in model:
    line += (
      f', {train_report.with_interval(model["fraction_of_ceiling"])} of ceiling'
    )
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
    f'{train_report.pairs_cell(out["test"])} test pairs of '
    f'{out["n_images"]} test images. Every score: value on the test pairs '
    f'[95% interval, bootstrap over test images, {out["bootstrap"]} '
    'draws], each baseline on the same pairs; "of ceiling" is the '
    "Spearman's fraction of the ceiling's.",
    '',
    train_report.score_table(out['scores']),
  ]
  for key, title in (
    ('test_rdms', 'True vs predicted RDM of the test images (eval)'),
    ('test_scatter', 'Predicted vs true, test pairs (eval)'),
  ):
    if key in out['figures']:
      lines += [f'![{title}]({out["figures"][key]})', '']
  return '\n'.join(lines)
