"""A workdir's run state: one run at a time, its config, finished stages.

- `lock(workdir)`: an exclusive lock (`fcntl.flock` on WORKDIR/.lock) held
  while a run works there; a second run on the same workdir stops with one
  line. The kernel drops the lock when its process ends, `kill -9`
  included, so a killed run never leaves it stuck. (A gs:// workdir has no
  lock: object stores have no flock.)
- `check_config(workdir, config)`: WORKDIR/config.json is the config the
  workdir was made with. The same config again: 'same' (finished stages
  are reused); none yet, or one whose run made nothing (failed at its
  start): 'new'; another config: one line naming the differing fields and
  the two ways on (`--config.resume=overwrite`, or a new workdir). Fields that do not change a finished stage's results
  (`IGNORED`) are not compared.
- `done(workdir, stage)` / `mark_done(workdir, stage)`: which stages finished
  under that config (WORKDIR/stages_done.json).
- `clear(workdir)`: what `resume=overwrite` removes before the run starts:
  every output but the data and embedding caches (checked on reading).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from rdmjax import files, paths
from rdmjax.config_lib import SAVED_CONFIG
from rdmjax.errors import InputError

LOCK = '.lock'
DONE = 'stages_done.json'
CONFIG = SAVED_CONFIG
# Fields no finished stage's results depend on: what a rerun may change.
IGNORED = (
  'resume',
  'sweep.',
  'bench.',
  'ckpt.eval_step',
  'data.num_workers',
  'train.log_every',
  'train.tensorboard',
  'embed.hf_device',
  'embed.bench_',
)
# What resume=overwrite removes (data/ and embeddings/ stay).
OUTPUTS = (
  'results.json',
  'report.md',
  'report',
  'summary.json',
  'figures',
  'rdms',
  'tensorboard',
  'ckpt',
  'leaked',
  'sweep',
  'folds',
  'rois',
  'metrics.jsonl',
  'timings.jsonl',
  'group_tasks',
  DONE,
  CONFIG,
)


@contextlib.contextmanager
def lock(workdir) -> Iterator[None]:
  """Holds WORKDIR/.lock; raises InputError if another run holds it."""
  workdir = paths.path(workdir)
  if paths.is_remote(workdir):
    yield
    return

  f = open(os.fspath(workdir / LOCK), 'a+')  # noqa: SIM115 (held open)
  try:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or 'another process'
      raise InputError(
        f'another rdmjax run ({holder}) is using {workdir}: wait for it '
        'to end, or use another --workdir'
      ) from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()}, since {time.strftime("%H:%M:%S")}\n')
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
  finally:
    f.close()


def flat(tree: Any, prefix: str = '') -> dict[str, Any]:
  """A config (ConfigDict or its JSON dict) as {'a.b': value}, values as
  JSON gives them back (tuples as lists)."""
  if hasattr(tree, 'to_json_best_effort'):
    tree = json.loads(tree.to_json_best_effort())
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out |= flat(v, f'{prefix}{k}.')
    else:
      out[f'{prefix}{k}'] = v
  return out


def _ignored(key: str) -> bool:
  return any(
    key == p or (p.endswith(('.', '_')) and key.startswith(p)) for p in IGNORED
  )


def differences(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
  """(field, old, new) for every compared field that differs."""
  keys = sorted(set(old) | set(new))
  return [
    (k, old.get(k), new.get(k))
    for k in keys
    if not _ignored(k) and old.get(k) != new.get(k)
  ]


def check_config(workdir, config, remove: bool = True) -> str:
  """'new', 'same', or InputError naming what differs (see the module
  docstring). With `resume=overwrite` the run is 'new', and the workdir's
  outputs are removed first (`clear`) where `remove` (the process that
  owns it)."""
  workdir = paths.path(workdir)
  f = workdir / CONFIG
  if not f.is_file():
    return 'new'
  try:
    old = flat(json.loads(f.read_text()))
  except (ValueError, AttributeError):
    old = {}
  diff = differences(old, flat(config))
  resume = str(config.get('resume', 'auto'))
  if resume not in ('auto', 'overwrite'):
    raise InputError(f'resume={resume!r}: use auto or overwrite')
  if resume == 'overwrite':
    if remove:
      clear(workdir)
    return 'new'
  if not diff:
    return 'same'
  if not started(workdir):  # nothing of the old config to mix with
    return 'new'
  shown = ', '.join(f'{k} {a!r} -> {b!r}' for k, a, b in diff[:4])
  more = f' and {len(diff) - 4} more' if len(diff) > 4 else ''
  raise InputError(
    f'{workdir} holds a run of another config ({shown}{more}): rerun with '
    '--config.resume=overwrite to replace its results, or use a new '
    '--workdir'
  )


def started(workdir) -> bool:
  """Whether the workdir holds anything a run made: a finished stage,
  results or a checkpoint (else its config.json binds nothing)."""
  workdir = paths.path(workdir)
  return bool(_read_done(workdir)) or any(
    (workdir / name).exists() for name in ('results.json', 'ckpt')
  )


def write_config(workdir, config) -> None:

  files.atomic_write(
    paths.path(workdir) / CONFIG, config.to_json_best_effort(indent=2)
  )


def _read_done(workdir) -> dict[str, Any]:
  f = paths.path(workdir) / DONE
  try:
    return json.loads(f.read_text()) if f.is_file() else {}
  except ValueError:
    return {}


def done(workdir, stage: str) -> bool:
  return stage in _read_done(workdir)


def mark_done(workdir, stage: str, wall_s: float) -> None:

  d = _read_done(workdir)
  d[stage] = {'wall_s': round(wall_s, 2), 'at': time.strftime('%F %T')}
  files.atomic_write(paths.path(workdir) / DONE, json.dumps(d, indent=1))


def clear(workdir) -> list[str]:
  """Removes a workdir's outputs (`OUTPUTS`, subjNN/); returns their names."""
  workdir = paths.path(workdir)
  gone = []
  for p in workdir.iterdir() if workdir.is_dir() else ():
    if p.name in OUTPUTS or (p.name.startswith('subj') and p.is_dir()):
      if p.is_dir():
        p.rmtree()
      else:
        p.unlink()
      gone.append(p.name)
  return gone
