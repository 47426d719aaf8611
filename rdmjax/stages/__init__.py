"""The stages of a run, one module per `--mode`, named as the mode.

Each module has `run(config, workdir)`. `STAGES` (defined in `rdmjax.config_lib`,
which every room may import) is the one list of them, in pipeline order
(the order of report.md's sections too); `PIPELINE` is what `--mode=all`
(the default) runs. Stage modules import lazily: `--mode=synth`
loads no model code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from rdmjax.config_lib import PIPELINE, STAGES

__all__ = ['PIPELINE', 'STAGES', 'run']


def run(stage: str, config, workdir: str | Path) -> Any:
  """Runs one stage: `rdmjax.stages.<stage>.run(config, workdir)`."""
  if stage not in STAGES:
    raise ValueError(f'stage {stage!r} unknown: use one of {STAGES}')
  return importlib.import_module(f'rdmjax.stages.{stage}').run(config, workdir)
