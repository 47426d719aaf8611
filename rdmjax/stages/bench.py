"""`--mode=bench`: the benchmark suite `config.bench.suite` (rdmjax.bench)."""

from __future__ import annotations

from pathlib import Path


def run(config, workdir: str | Path) -> list[dict]:
  """Prints each figure as measured; appends them to WORKDIR/bench.jsonl."""
  from rdmjax import bench

  return bench.run(config, workdir)
