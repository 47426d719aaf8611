"""Who writes a run's files, and how: a leaf every room may import.

The one writer rule: every file of a run (results, report, figures,
summaries, caches, metrics) is written by the process for which
`is_writer()` holds (process 0), through `atomic_write` or a temporary name
and a rename. JSON written here is strict (`finite_json`): NaN and
infinities as null.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import numpy as np
from etils import epath

from rdmjax import paths


def atomic_write(path: str | os.PathLike, data: str | bytes) -> epath.Path:
  """Writes text or bytes through a temporary name and a rename (writer
  only), on a local disk or cloud storage (`rdmjax.paths`)."""
  path = paths.path(path)
  if is_writer():
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
    if isinstance(data, bytes):
      tmp.write_bytes(data)
    else:
      tmp.write_text(data)
    tmp.replace(path)
  return path


def _jsonable(x: Any, finite: bool = False) -> Any:
  """x as JSON-able Python values: NumPy/JAX arrays and scalars as lists
  and numbers, paths as strings, keys as strings; with `finite`, every NaN
  and infinity (also array elements) as None, strict JSON's null."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v, finite) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v, finite) for v in x]
  if isinstance(x, os.PathLike):
    return str(x)
  if isinstance(x, (np.generic, np.ndarray)) or hasattr(x, '__array__'):
    return _jsonable(np.asarray(x).tolist(), finite)
  if finite and isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def finite_json(x: Any) -> Any:
  """JSON-able x with NaN and infinities as None (`_jsonable`)."""
  return _jsonable(x, finite=True)


def dumps_results(results: dict[str, Any]) -> str:
  """results.json's text: strict JSON (NaN/inf as null; any left would
  raise), 2-space indented."""
  return json.dumps(finite_json(results), indent=2, allow_nan=False) + '\n'


def is_writer() -> bool:
  """True in the one process that writes a run's files (process 0). A
  process that has not imported JAX (a figure worker,
  `rdmjax.report.figures`) is not one of a run's JAX processes: it writes
  what it was given to."""
  jax = sys.modules.get('jax')
  return jax is None or jax.process_index() == 0


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
  """Appends one JSON line to path (writer only).

  Locally an append; on cloud storage, whose objects cannot be appended
  to, the (small) file is rewritten.
  """
  if not is_writer():
    return
  path = paths.path(path)
  line = json.dumps(_jsonable(row), default=str) + '\n'
  if paths.is_remote(path):
    atomic_write(path, (path.read_text() if path.exists() else '') + line)
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open('a') as f:
    f.write(line)
