"""`--mode=synth`: writes the synthetic subject (`config.data.subject`)."""

from __future__ import annotations

from pathlib import Path

from absl import logging

from rdmjax import paths
from rdmjax.data import synthetic
from rdmjax.report import is_writer


def run(config, workdir: str | Path) -> Path:
  """Writes WORKDIR/subjNN in the Algonauts layout (process 0 only)."""
  path = paths.path(workdir) / config.data.subject
  if is_writer():
    path = synthetic.write_subject(
      workdir, config.data.subject, **dict(config.data.synthetic)
    )
    logging.info('wrote synthetic subject %s', path)
  return path
