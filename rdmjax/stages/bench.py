"""`--mode=bench`: the benchmark suite `config.bench.suite` (rdmjax.bench)."""

from __future__ import annotations

from pathlib import Path

from rdmjax import bench


def run(config, workdir: str | Path) -> list[dict]:
  """Prints each figure as measured; appends them to WORKDIR/bench.jsonl."""
  return bench.run(config, workdir)
