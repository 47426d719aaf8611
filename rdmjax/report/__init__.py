"""The run's outputs: results.json and report.md.

Each stage merges its results under its own key of `WORKDIR/results.json`
and writes its markdown section to `WORKDIR/report/<stage>.md`; `report.md`
is rebuilt from the sections in `rdmjax.config_lib.STAGES` order, so
rerunning one stage never loses another's output. Files are written by the
one writer (`rdmjax.files`). Figures: `report.plots`, `report.train_plots`.

results.json is strict JSON: NaN and infinities (a score of constant
predictions, the throughput of a rerun that trained no step) are written
as null (`files.finite_json`); metrics.jsonl keeps them as NaN.
"""

from __future__ import annotations

import json
import os
from typing import Any

from etils import epath

from rdmjax import paths
from rdmjax.config_lib import STAGES
from rdmjax.files import atomic_write, dumps_results, is_writer


def read_results(workdir: str | os.PathLike) -> dict[str, Any]:
  path = paths.path(workdir) / 'results.json'
  return json.loads(path.read_text()) if path.is_file() else {}


def update_results(
  workdir: str | os.PathLike, stage: str, results: dict[str, Any]
) -> None:
  """Sets `results.json[stage] = results`, keeping the other stages; NaN
  and infinities are written as null (`dumps_results`)."""
  if not is_writer():
    return
  all_results = read_results(workdir)
  all_results[stage] = results
  # The whole file: a NaN left by an older version is cleaned too.
  atomic_write(paths.path(workdir) / 'results.json', dumps_results(all_results))


def write_section(
  workdir: str | os.PathLike, stage: str, markdown: str
) -> epath.Path:
  """Writes one stage's section and rebuilds `report.md`."""
  workdir = paths.path(workdir)
  if is_writer():
    atomic_write(workdir / 'report' / f'{stage}.md', markdown.rstrip() + '\n')
    sections = sorted(
      (workdir / 'report').glob('*.md'),
      key=lambda p: (STAGES.index(p.stem) if p.stem in STAGES else 99, p.stem),
    )
    body = '\n'.join(p.read_text() for p in sections)
    atomic_write(workdir / 'report.md', '# rdmjax report\n\n' + body)
  return workdir / 'report.md'


def md_table(header: list[str], rows: list[list[Any]]) -> str:
  """A markdown table; floats with 4 significant digits."""

  def fmt(v: Any) -> str:
    return f'{v:.4g}' if isinstance(v, float) else str(v)

  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(fmt(v) for v in r) + ' |' for r in rows]
  return '\n'.join(lines) + '\n'
