"""Orbax checkpoints of a training run: save, keep, resume, check.

`WORKDIR/ckpt/<step>/` holds two items:

  state: the train state pytree {'params', 'opt_state', 'step', 'key'}
  meta:  JSON: model config, input width, ROI, metric, image split, leaked,
         validation Spearman, pairs seen.

Orbax writes a step into `<step>.orbax-checkpoint-tmp-*` and renames it when
complete, so a `kill -9` during a save leaves only a tmp folder: the manager
never lists it, and `manager()` deletes such leftovers before the run goes
on. Kept: the last `ckpt.keep` steps and, with `ckpt.keep_best`, the best by
validation Spearman. `restore` checks the meta against the run first, so a
checkpoint of another model or shape ends in one clear line, not a pytree
mismatch deep inside Orbax.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from rdmjax.errors import InputError

TMP_MARK = '.orbax-checkpoint-tmp'
# Meta keys that must match between a checkpoint and the run restoring it.
COMPAT_KEYS = ('model', 'd_in', 'roi', 'metric', 'n_images', 'n_vertices')
BEST_METRIC = 'val_spearman'


def _best_metric(metrics: dict[str, Any]) -> float:
  return float(metrics.get(BEST_METRIC, float('-inf')))


def clean_tmp(directory: str | Path) -> list[Path]:
  """Deletes unfinished saves (a run killed mid-save leaves these)."""
  directory = Path(directory)
  gone = []
  if jax.process_index() == 0 and directory.is_dir():
    for p in directory.iterdir():
      if TMP_MARK in p.name:
        shutil.rmtree(p, ignore_errors=True)
        gone.append(p)
  return gone


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
    Path(directory).absolute(), options=options, item_names=('state', 'meta')
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


def check_compatible(
  meta: dict[str, Any], expect: dict[str, Any], where: str
) -> None:
  """Raises InputError naming the first field where the run differs."""
  for k in COMPAT_KEYS:
    if k in expect and meta.get(k) != expect[k]:
      raise InputError(
        f'checkpoint {where} was written for {k}={meta.get(k)!r} but this run '
        f'has {k}={expect[k]!r}: use another --workdir, or delete {where}'
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
  """
  where = str(Path(mngr.directory) / str(step))
  meta = read_meta(mngr, step)
  check_compatible(meta, expect_meta, where)
  try:
    out = mngr.restore(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
    )
  except (ValueError, KeyError, TypeError) as e:
    msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise InputError(
      f'checkpoint {where} does not fit this run ({msg}): use another '
      f'--workdir, or delete {where}'
    ) from None
  return out.state, meta


def pick_step(mngr: ocp.CheckpointManager, which: str = 'best') -> int | None:
  """'best' (by validation Spearman, else latest) or 'latest'; None if none."""
  if which not in ('best', 'latest'):
    raise InputError(f'checkpoint choice {which!r}: use best or latest')
  if which == 'best' and mngr.best_step() is not None:
    return mngr.best_step()
  return mngr.latest_step()
