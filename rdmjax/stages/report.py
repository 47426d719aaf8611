"""`--mode=report`: every figure and report.md again, nothing recomputed.

Redraws each figure a finished workdir recorded (`rdmjax.report.figures`:
its plot function, today's code, on the inputs it was drawn from) and
rebuilds each stage's section of report.md from results.json, so a change
to a plot, to the vector formats (`--vector_figures=pdf`) or to a section's
text is seen in seconds. The run's own config is read from the workdir
(`--config` is not used); the workdir's finished stages stay as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections

from rdmjax import paths, report
from rdmjax.config_lib import SAVED_CONFIG, STAGES
from rdmjax.errors import InputError
from rdmjax.report import data as data_report
from rdmjax.report import embed as embed_report
from rdmjax.report import eval as eval_report
from rdmjax.report import figures
from rdmjax.report import group as group_report
from rdmjax.report import rdm as rdm_report
from rdmjax.report import sweep as sweep_report
from rdmjax.report import train as train_report


def sections(run_config) -> dict[str, Any]:
  """Stage -> its section of report.md as a function of its results.json
  entry (eval's also of the run's config)."""
  return {
    'data': data_report.markdown,
    'rdm': rdm_report.markdown,
    'embed': embed_report.markdown,
    'train': train_report.markdown,
    'sweep': sweep_report.markdown,
    'eval': lambda r: eval_report.markdown(r, run_config),
    'group': group_report.markdown,
    'tfds': data_report.tfds_markdown,
  }


def run(config, workdir: str | Path) -> dict[str, Any]:
  """Redraws and rewrites; returns {'figures': n, 'sections': [stage]}."""
  del config  # the run's own is read from the workdir
  workdir = paths.path(workdir)
  results = report.read_results(workdir)
  if not results:
    raise InputError(
      f'{workdir} has no results.json: --mode=report redraws a finished '
      'run; run its stages first (--mode=all)'
    )
  saved = workdir / SAVED_CONFIG
  run_config = ml_collections.ConfigDict(
    json.loads(saved.read_text()) if saved.is_file() else {}
  )
  n = figures.redraw(workdir)
  table = sections(run_config)
  done = [s for s in STAGES if s in results and s in table]
  for stage in done:
    report.write_section(workdir, stage, table[stage](results[stage]))
  print(
    f'rdmjax: report: {n} figures redrawn, sections {", ".join(done)}; '
    f'{workdir / "report.md"}',
    flush=True,
  )
  return {'figures': n, 'sections': done}
