"""Orbax checkpoints of a training run: save, keep, resume, check.

`WORKDIR/ckpt/<step>/` holds `state` (the train state pytree: params,
opt_state, step, key) and `meta` (JSON: model, input width, ROI, metric,
image split, leaked, validation Spearman, pairs seen). Kept: the last
`ckpt.keep` steps and, with `ckpt.keep_best`, the best by validation
Spearman. `manager()` deletes the temporary folders a kill mid-save leaves;
`restore_newest` falls back past a listed step that does not read back;
`restore` checks the meta first, so another model's checkpoint ends in one
line. Why these cases arise (Orbax's rename, deletes, no fsync):
docs/training.md, "Checkpoints and resume".
"""

from __future__ import annotations

import copy
import logging as std_logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from rdmjax import paths
from rdmjax.errors import InputError
from rdmjax.files import is_writer

TMP_MARK = '.orbax-checkpoint-tmp'
# Meta keys that must match between a checkpoint and the run restoring it.
# What a checkpoint must match to be trained on or scored: the model, the
# data, and the image split (a checkpoint scored under another split seed,
# fractions or leaked setting would score its own training images).
COMPAT_KEYS = (
  'model',
  'd_in',
  'subject',
  'roi',
  'metric',
  'embeddings',
  'n_images',
  'n_vertices',
  'leaked',
  'split_seed',
  'fractions',
  'test_images',
)
BEST_METRIC = 'val_spearman'
# Orbax logs a dozen INFO lines per save; keep its warnings and errors.
ORBAX_LOG_LEVEL = std_logging.WARNING
# What reading a damaged step raises (tensorstore errors are ValueErrors).
READ_ERRORS = (ValueError, KeyError, TypeError, OSError, EOFError)


class UnreadableCheckpointError(InputError):
  """A listed step that does not read back onto this run's state."""


class _QuietOrbax(std_logging.Filter):
  """Drops Orbax records below ORBAX_LOG_LEVEL.

  Orbax logs through absl, i.e. the one 'absl' Python logger that rdmjax
  uses too, so a logger level would hide our lines as well: filter by the
  file that logged instead.
  """

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= ORBAX_LOG_LEVEL:
      return True
    return f'{os.sep}orbax{os.sep}' not in record.pathname


def quiet_orbax_logs() -> None:
  """Lowers Orbax's logs to warnings and errors (idempotent)."""
  absl_logger = std_logging.getLogger('absl')
  if not any(isinstance(f, _QuietOrbax) for f in absl_logger.filters):
    absl_logger.addFilter(_QuietOrbax())
  std_logging.getLogger('orbax').setLevel(ORBAX_LOG_LEVEL)


def _best_metric(metrics: dict[str, Any]) -> float:
  # NaN (constant predictions at the first steps) would sort anywhere.
  v = float(metrics.get(BEST_METRIC, float('-inf')))
  return float('-inf') if math.isnan(v) else v


def clean_tmp(directory: str | Path) -> list[Path]:
  """Deletes unfinished saves (a run killed mid-save leaves these)."""
  directory = paths.path(directory)
  gone = []
  if is_writer() and directory.is_dir():
    for p in directory.iterdir():
      if TMP_MARK in p.name:
        p.rmtree(missing_ok=True)
        gone.append(p)
  return gone


def _whole_replicas() -> None:
  """Saves each replicated jax.Array whole, from one replica.

  Orbax's default off GPUs (`use_replica_parallel`) writes a replicated
  array in slices, one per replica: an eager slice per leaf shape, each
  compiled (24 programs for the tiny MLP's state on 8 CPU devices), for
  nothing on one host's small state. The same handler (and its metadata
  store), that flag off; nothing changes where orbax has no such flag.
  """
  handler = ocp.type_handlers.get_type_handler(jax.Array)
  if getattr(handler, '_use_replica_parallel', False):
    handler = copy.copy(handler)
    handler._use_replica_parallel = False
    # Orbax warns of every override, ours included: not the user's news.
    absl_logger = std_logging.getLogger('absl')
    level = absl_logger.level
    absl_logger.setLevel(std_logging.ERROR)
    try:
      ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
    finally:
      absl_logger.setLevel(level)


def manager(
  directory: str | Path,
  every: int,
  keep: int,
  keep_best: bool = True,
  read_only: bool = False,
) -> ocp.CheckpointManager:
  """A CheckpointManager saving every `every` steps.

  Args:
    directory: WORKDIR/ckpt.
    every: save interval in steps (`save(..., force=True)` saves anyway).
    keep: how many of the latest steps to keep.
    keep_best: also keep the step with the best validation Spearman.
    read_only: for evaluation: never writes or deletes.

  Returns:
    The manager; call `wait_until_finished()` before the process exits.
  """
  if every < 1 or keep < 1:
    raise InputError(
      f'ckpt.every={every} and ckpt.keep={keep} must both be >= 1'
    )
  cm = ocp.checkpoint_managers
  policies = [cm.LatestN(keep)]
  if keep_best:
    # BestN sorts ascending and keeps the top n: reverse=False keeps the max.
    policies.append(cm.BestN(get_metric_fn=_best_metric, reverse=False, n=1))
  quiet_orbax_logs()
  _whole_replicas()
  if not read_only:
    clean_tmp(directory)
  options = ocp.CheckpointManagerOptions(
    save_decision_policy=cm.FixedIntervalPolicy(every),
    preservation_policy=cm.AnyPreservationPolicy(policies),
    best_fn=_best_metric if keep_best else None,
    best_mode='max',
    create=not read_only,
    read_only=read_only,
  )
  return ocp.CheckpointManager(
    paths.path(directory), options=options, item_names=('state', 'meta')
  )


def save(
  mngr: ocp.CheckpointManager,
  step: int,
  state: Any,
  meta: dict[str, Any],
  val_spearman: float | None = None,
  force: bool = False,
) -> bool:
  """Saves (asynchronously) if the interval or `force` says so.

  Returns:
    Whether a save was started.
  """
  metrics = None if val_spearman is None else {BEST_METRIC: val_spearman}
  meta = dict(meta, step=int(step), val_spearman=val_spearman)
  return mngr.save(
    int(step),
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
    ),
    metrics=metrics,
    force=force,
  )


def read_meta(mngr: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  out = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  return dict(out.meta)


def _first_line(e: BaseException) -> str:
  return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def check_compatible(
  meta: dict[str, Any], expect: dict[str, Any], where: str
) -> None:
  """Raises InputError naming every field where the run differs, and the
  ways on for the whole checkpoint folder (not only this step)."""
  diff = [
    f'{k}={meta.get(k)!r} (this run: {expect[k]!r})'
    for k in COMPAT_KEYS
    if k in expect and meta.get(k) != expect[k]
  ]
  if diff:
    folder = Path(where).parent
    raise InputError(
      f'checkpoint {where} was written for {", ".join(diff)}: its run is '
      f'another; use another --workdir, or --config.resume=overwrite to '
      f'remove {folder} and the results with it'
    )


def restore(
  mngr: ocp.CheckpointManager,
  step: int,
  abstract_state: Any,
  expect_meta: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
  """Restores a step onto the shapes and shardings of `abstract_state`.

  Args:
    mngr: the run's manager.
    step: which step.
    abstract_state: `jax.ShapeDtypeStruct`s with shardings (from eval_shape).
    expect_meta: this run's meta; COMPAT_KEYS must match.

  Returns:
    (state placed as abstract_state says, meta).

  Raises:
    InputError: the meta names another model, ROI, metric or data.
    UnreadableCheckpointError: the step does not read back (damaged files,
      or arrays of other shapes).
  """
  where = str(Path(mngr.directory) / str(step))

  def unreadable(e: BaseException) -> UnreadableCheckpointError:
    return UnreadableCheckpointError(
      f'checkpoint {where} does not fit this run ({_first_line(e)}): use '
      f'another --workdir, or --config.resume=overwrite to remove '
      f'{Path(where).parent} and the results with it'
    )

  try:
    meta = read_meta(mngr, step)
  except READ_ERRORS as e:
    raise unreadable(e) from None
  check_compatible(meta, expect_meta, where)
  try:
    out = mngr.restore(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
    )
  except READ_ERRORS as e:
    raise unreadable(e) from None
  return out.state, meta


def restore_newest(
  mngr: ocp.CheckpointManager,
  abstract_state: Any,
  expect_meta: dict[str, Any],
  steps: Iterable[int] | None = None,
) -> tuple[Any, dict[str, Any], int] | None:
  """Restores the newest step that reads back; None if there is no step.

  A step that Orbax lists but cannot read (see the module docstring) is
  skipped with a warning; once a step restores, the skipped ones are deleted
  (unless the manager is read-only), so a resumed run can save those step
  numbers again.

  Args:
    mngr: the run's manager.
    abstract_state: as for `restore`.
    expect_meta: as for `restore`.
    steps: the candidates in the order to try (default: every step of the
      manager, newest first).

  Returns:
    (state, meta, step) or None.

  Raises:
    InputError: a step names another model or data (no fallback: the
      workdir belongs to another run).
    UnreadableCheckpointError: no candidate reads back; it names the first.
  """
  if steps is None:
    steps = sorted(mngr.all_steps(), reverse=True)
  steps = list(steps)
  errors = []
  for step in steps:
    try:
      state, meta = restore(mngr, step, abstract_state, expect_meta)
    except UnreadableCheckpointError as e:
      logging.warning('skipping checkpoint step %d: %s', step, e)
      errors.append((step, e))
      continue
    for bad, _ in errors:
      # A read-only manager (evaluation) keeps it and says so.
      logging.warning('removing unreadable checkpoint step %d', bad)
      mngr.delete(bad)
    if errors:
      logging.warning('restored step %d instead of step %d', step, steps[0])
    return state, meta, step
  if errors:
    raise errors[0][1]
  return None


def pick_step(
  mngr: ocp.CheckpointManager, which: str | int = 'best'
) -> int | None:
  """Which step to use; None if there is none.

  Args:
    mngr: the run's manager.
    which: 'best' (by validation Spearman, else the latest), 'latest', or a
      step number (an int or a string of digits) that must exist.
  """
  which = str(which).strip()
  if which.isdigit():
    step, steps = int(which), mngr.all_steps()
    if step not in steps:
      raise InputError(
        f'checkpoint step {step} is not in {mngr.directory} (it holds '
        f'{list(steps)}): set ckpt.eval_step to one of those, best or latest'
      )
    return step
  if which not in ('best', 'latest'):
    raise InputError(
      f'checkpoint choice {which!r}: use best, latest or a step number'
    )
  if which == 'best' and mngr.best_step() is not None:
    return mngr.best_step()
  return mngr.latest_step()
