"""The run's outputs: `results.json` and `report.md`, shared by every stage.

Each stage (rdm, train, eval, embed, bench) merges its results under its own
key of `WORKDIR/results.json` and writes its markdown section to
`WORKDIR/report/<stage>.md`; `report.md` is rebuilt from the sections in
pipeline order, so rerunning one stage never loses another's output. Writes
go through a temporary file and a rename, so an interrupted run leaves the
previous file intact. Only process 0 writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

ORDER = ('data', 'rdm', 'embed', 'train', 'eval', 'bench')


def _atomic_write(path: Path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(text)
  os.replace(tmp, path)


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, Path):
    return str(x)
  if isinstance(x, (np.generic, np.ndarray)) or hasattr(x, '__array__'):
    return _jsonable(np.asarray(x).tolist())
  return x


def _is_writer() -> bool:
  try:
    import jax

    return jax.process_index() == 0
  except Exception:  # noqa: BLE001 - no jax backend: a single process
    return True


def read_results(workdir: str | os.PathLike) -> dict[str, Any]:
  path = Path(workdir) / 'results.json'
  return json.loads(path.read_text()) if path.is_file() else {}


def update_results(
  workdir: str | os.PathLike, stage: str, results: dict[str, Any]
) -> None:
  """Sets `results.json[stage] = results`, keeping the other stages."""
  if not _is_writer():
    return
  all_results = read_results(workdir)
  all_results[stage] = _jsonable(results)
  _atomic_write(
    Path(workdir) / 'results.json', json.dumps(all_results, indent=2) + '\n'
  )


def write_section(
  workdir: str | os.PathLike, stage: str, markdown: str
) -> Path:
  """Writes one stage's section and rebuilds `report.md`."""
  workdir = Path(workdir)
  if _is_writer():
    _atomic_write(workdir / 'report' / f'{stage}.md', markdown.rstrip() + '\n')
    sections = sorted(
      (workdir / 'report').glob('*.md'),
      key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem),
    )
    body = '\n'.join(p.read_text() for p in sections)
    _atomic_write(workdir / 'report.md', '# rdmjax report\n\n' + body)
  return workdir / 'report.md'


def md_table(header: list[str], rows: list[list[Any]]) -> str:
  """A markdown table; floats with 4 significant digits."""

  def fmt(v: Any) -> str:
    return f'{v:.4g}' if isinstance(v, float) else str(v)

  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(fmt(v) for v in r) + ' |' for r in rows]
  return '\n'.join(lines) + '\n'
