"""`--mode=synth`: writes the synthetic subject (`config.data.subject`), or
with `data.subjects` the synthetic population, where the pipeline reads it
(WORKDIR/data, `rdmjax.data.data_root`)."""

from __future__ import annotations

from pathlib import Path

from absl import logging

from rdmjax import data
from rdmjax.files import is_writer


def run(config, workdir: str | Path) -> Path:
  """Writes the subject(s) under the data root (process 0 only)."""
  root = data.data_root(config, workdir)
  if is_writer():
    data.ensure_synthetic(config, workdir)
    logging.info('synthetic data in %s', root)
  return root
