"""Training: one jitted step that samples pairs, makes targets and updates.

`train(config, workdir)`: responses of `data.roi` split by image and
standardised on training images (`rdmjax.training.data`); steps of ONE jitted,
donated call each (fold the step into the base key, draw a batch of pairs
of training images, their targets, forward, backward, Optax update; pairs
sharded over the mesh `data` axis, the rest replicated); every
`train.eval_every` steps the validation pairs are scored and an Orbax
checkpoint saved (last N and best by validation Spearman); a rerun with the
same workdir resumes; the best checkpoint scores the test pairs (every
pair, or a fixed seeded subset past `train.max_eval_pairs`:
`rdmjax.training.evaluation`). `prepare` is the setup that training and `--mode=eval`
share.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from tqdm.auto import tqdm

from rdmjax import (
  files,
  paths,
  sharding,
)
from rdmjax.errors import InputError
from rdmjax.models import build_model
from rdmjax.training import checkpoints as checkpoint
from rdmjax.training import evaluation as evaluate
from rdmjax.training import losses, metric_writer, metrics, pairs
from rdmjax.training.data import (
  Data,
  check_batch,
  load_data,
  target_mean,
)

PAIR_KEYS = ('i', 'j', 'target', 'mask', 'bi', 'bj')


def make_optimizer(config) -> tuple[optax.GradientTransformation, Any]:
  """Adam/AdamW with warmup then cosine or constant lr, optional clipping."""
  oc, steps = config.optim, int(config.train.steps)
  warm = int(min(oc.warmup_steps, steps // 2))
  if oc.schedule == 'cosine':
    lr = optax.warmup_cosine_decay_schedule(
      0.0, oc.lr, warm, max(steps, warm + 1), end_value=oc.lr * 0.01
    )
  elif oc.schedule == 'constant':
    lr = optax.join_schedules(
      [
        optax.linear_schedule(0.0, oc.lr, max(warm, 1)),
        optax.constant_schedule(oc.lr),
      ],
      [warm],
    )
  else:
    raise InputError(
      f'optim.schedule={oc.schedule!r} unknown; use cosine or constant'
    )
  if oc.name == 'adam':
    opt = optax.adam(lr)
  elif oc.name == 'adamw':
    opt = optax.adamw(lr, weight_decay=oc.weight_decay)
  else:
    raise InputError(f'optim.name={oc.name!r} unknown; use adam or adamw')
  chain = [optax.clip_by_global_norm(oc.clip_norm)] if oc.clip_norm else []
  return optax.chain(*chain, opt), lr


def loss_fn(config) -> losses.LossFn:
  """The loss `train.loss` names: fn(pred, target, mask, key) (`losses`)."""
  return losses.get(config)


# Folded into the step's key for the loss's own draws (the rank losses'
# comparisons), apart from the batch's (`pairs.make_batch`).
LOSS_STREAM = 0x6C6F7373


def predict(model, x: jax.Array, batch: dict[str, jax.Array]) -> jax.Array:
  """Predictions for a batch: block batches embed their B images once."""
  if 'block' in batch:
    # Gather in f32: the gather's gradient is a scatter-add over the pairs,
    # and bf16 scatter-adds are emulated (67x slower on an H100, measured).
    h = model.embed(x[batch['block']]).astype(jnp.float32)
    return model.pair_head(h[batch['bi']], h[batch['bj']])
  return model.pair_head(model.embed(x[batch['i']]), model.embed(x[batch['j']]))


def abstract_model(config, d_in: int):
  """(graphdef, abstract state) without allocating parameters."""
  model = nnx.eval_shape(
    lambda: build_model(config.model, d_in, rngs=nnx.Rngs(0))
  )
  return nnx.split(model)


def init_state(config, d_in: int, tx, mesh, bias: float = 0.0):
  """A jitted init whose outputs land replicated: (graphdef, state).

  The output layer starts at 1% of its initial weights and the mean
  training target as bias, so the first steps learn the ranking, not the
  offset (1 - r ~ 1). tx: `make_optimizer(config)`'s; the program is
  compiled once for every run of the same model, optimizer and d_in (the
  seed and bias are its arguments: the leaked run, folds and ROIs reuse
  the main run's).
  """
  graphdef, _ = abstract_model(config, d_in)
  if config.model.output == 'sigmoid2':
    p = min(max(bias / 2.0, 1e-3), 1 - 1e-3)
    bias = float(np.log(p / (1 - p)))
  init = _init_program(config, d_in, tx, mesh)
  return graphdef, init(np.int32(config.seed), np.float32(bias))


_INIT_PROGRAMS: dict = {}


def _init_program(config, d_in: int, tx, mesh):
  """The jitted init of `init_state`, one per model, optimizer (and
  schedule length), d_in and mesh."""
  key = (
    json.dumps(config.model.to_dict(), sort_keys=True, default=str),
    json.dumps(config.optim.to_dict(), sort_keys=True, default=str),
    int(config.train.steps),
    int(d_in),
    mesh,
  )
  if key not in _INIT_PROGRAMS:
    _INIT_PROGRAMS[key] = _make_init(config, d_in, tx, mesh)
  return _INIT_PROGRAMS[key]


def _make_init(config, d_in: int, tx, mesh):
  rep = sharding.replicated(mesh)

  def init(seed, bias):
    # nnx.Rngs(int)'s key, from a traced seed.
    model = build_model(config.model, d_in, rngs=nnx.Rngs(jax.random.key(seed)))
    if hasattr(model, 'out') and getattr(model.out, 'bias', None) is not None:
      model.out.bias.value = jnp.full_like(model.out.bias.value, bias)
      # A small output layer: the first predictions are the mean target, not
      # noise of unit scale around it (targets vary by ~0.1). Not zero: the
      # Pearson term of pearson_mse is 0/0 on constant predictions.
      model.out.kernel.value = 0.01 * model.out.kernel.value
    params = nnx.state(model)
    key = jax.random.key_data(jax.random.key(seed + 1))
    return dict(
      params=params,
      opt_state=tx.init(params),
      step=jnp.zeros((), jnp.int32),
      key=key,
    )

  return jax.jit(init, out_shardings=rep)


def make_train_step(graphdef, tx, lr_fn, config, mesh):
  """The jitted step: state, device data, split -> new state, step metrics.

  The state is donated; data arrays are arguments (never baked-in
  constants), so one compiled program serves every step.
  """
  rep = sharding.replicated(mesh)
  bsh = sharding.batch_sharding(mesh)
  loss = loss_fn(config)

  def step_fn(state, data, split_idx):
    key = jax.random.wrap_key_data(state['key'])
    batch = pairs.make_batch(key, state['step'], data, split_idx, config)
    loss_key = jax.random.fold_in(
      jax.random.fold_in(key, state['step']), LOSS_STREAM
    )
    batch = {
      k: jax.lax.with_sharding_constraint(v, bsh) if k in PAIR_KEYS else v
      for k, v in batch.items()
    }

    def objective(params):
      model = nnx.merge(graphdef, params)
      pred = predict(model, data['x'], batch)
      return loss(pred, batch['target'], batch['mask'], loss_key), pred

    (value, pred), grads = jax.value_and_grad(objective, has_aux=True)(
      state['params']
    )
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    out = dict(
      state,
      params=params,
      opt_state=opt_state,
      step=state['step'] + 1,
    )
    logs = dict(
      loss=value,
      lr=lr_fn(state['step']),
      batch_pearson=metrics.pearson(pred, batch['target'], batch['mask']),
      grad_norm=optax.global_norm(grads),
    )
    return out, logs

  return jax.jit(
    step_fn,
    in_shardings=(rep, rep, rep),
    out_shardings=(rep, rep),
    donate_argnums=0,
  )


@dataclasses.dataclass
class Prepared:
  """What training and evaluation share: data, mesh, model graph, shapes.

  Attributes:
    data: the run's host arrays (`rdmjax.training.data.Data`).
    mesh: the device mesh.
    tx, lr_fn: the optimizer and its learning-rate schedule.
    graphdef: the model's NNX graph.
    abstract: the train state's shapes, dtypes and (replicated) shardings.
    device_data: {'z', 'x'} placed replicated on the mesh.
  """

  data: Data
  mesh: Any
  tx: Any
  lr_fn: Any
  graphdef: Any
  abstract: dict[str, Any]
  device_data: dict[str, jax.Array]


def prepare(config, workdir: str | Path) -> Prepared:
  """Loads and checks the data, builds the mesh, optimizer and shapes."""
  data = load_data(config, workdir)
  mesh = sharding.make_mesh(config.mesh)
  check_batch(config, data, mesh)
  tx, lr_fn = make_optimizer(config)
  graphdef, abstract_params = abstract_model(config, data.meta['d_in'])
  rep = sharding.replicated(mesh)
  abstract = dict(
    params=abstract_params,
    opt_state=jax.eval_shape(tx.init, abstract_params),
    step=jax.ShapeDtypeStruct((), jnp.int32),
    key=jax.ShapeDtypeStruct((2,), jnp.uint32),
  )
  abstract = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), abstract
  )
  device_data = sharding.put_replicated({'z': data.z, 'x': data.x}, mesh)
  if jax.default_backend() == 'cpu' and jax.process_count() == 1:
    # The device copy is host memory too: keep one, seen zero-copy.
    data.z = np.asarray(device_data['z'])
  return Prepared(data, mesh, tx, lr_fn, graphdef, abstract, device_data)


@dataclasses.dataclass
class TrainResult:
  """A finished run: test scores of the chosen checkpoint and its history.

  Attributes:
    test: {'r2', 'pearson', 'spearman', 'n_pairs', 'n_all', ...}: the test
      set's scores (`rdmjax.training.evaluation.score`).
    val_best: the best validation Spearman, or None.
    best_step: the step scored on the test pairs.
    steps, pairs_per_step, pairs_per_s: the run's size and last throughput.
    stopped_at: the step at which it stopped early (`train.patience`), or
      None where it ran all its steps.
    params: the scored parameters (on device).
    rows: metrics.jsonl rows.
    mats: the test RDMs for figures (`rdmjax.training.evaluation.score`), or None.
    data: the run's data.
    test_pairs: the scored test pairs (`rdmjax.training.evaluation.TestPairs`).
  """

  test: dict[str, Any]
  val_best: float | None
  best_step: int | None
  steps: int
  pairs_per_step: int
  pairs_per_s: float
  params: Any
  rows: list[dict[str, Any]]
  mats: dict[str, np.ndarray] | None
  data: Data
  test_pairs: Any = None
  stopped_at: int | None = None

  def summary(self) -> dict[str, Any]:
    """The JSON-able scalars (results.json)."""
    keys = ('test', 'val_best', 'best_step', 'steps', 'stopped_at')
    return {
      k: getattr(self, k) for k in keys + ('pairs_per_step', 'pairs_per_s')
    }


def _truncate_metrics(path: Path, upto: int) -> list[dict]:
  """Keeps metrics.jsonl rows up to a resumed step (drops a lost tail)."""
  if not path.is_file():
    return []
  rows = [json.loads(line) for line in path.read_text().splitlines() if line]
  rows = [r for r in rows if r['step'] <= upto]
  files.atomic_write(path, ''.join(json.dumps(r) + '\n' for r in rows))
  return rows


def _restore(prep: Prepared, mngr, state, workdir: Path):
  """Resumes from the newest readable step: (state, start step, rows)."""
  found = checkpoint.restore_newest(mngr, prep.abstract, prep.data.meta)
  if found is None:
    if (workdir / 'metrics.jsonl').exists():
      _truncate_metrics(workdir / 'metrics.jsonl', -1)
    return state, 0, []
  state, meta, latest = found
  if meta.get('split') != prep.data.meta['split']:
    raise InputError(
      f'checkpoint {workdir / "ckpt"} used another image split: use '
      'another --workdir, or the seed and fractions it was made with'
    )
  logging.info('resumed from step %d', latest)
  return state, latest, _truncate_metrics(workdir / 'metrics.jsonl', latest)


def evals_without_gain(vals) -> int:
  """Evaluations since the best (the first of equals) of validation scores
  vals (NaN: none); 0 when the last is the best, or there are none."""
  v = np.nan_to_num(np.asarray(vals, float), nan=-np.inf)
  return 0 if v.size == 0 else int(v.size - 1 - np.argmax(v))


def _plateau(config, rows) -> bool:
  """True once validation Spearman has not risen for `train.patience`
  evaluations in a row (never with patience 0)."""
  patience = int(config.train.get('patience', 0))
  vals = [r['val_spearman'] for r in rows if 'val_spearman' in r]
  return patience > 0 and evals_without_gain(vals) >= patience


def _loop(config, prep, mngr, state, start, rows, workdir, stop_after):
  """Steps from `start` to the end (or stop_after, or a plateau of
  validation Spearman: `_plateau`); logs, scores, saves. Returns (state,
  pairs per second, eval function, the last step)."""
  steps, n_pairs = int(config.train.steps), pairs.batch_size(config)
  step_fn = make_train_step(
    prep.graphdef, prep.tx, prep.lr_fn, config, prep.mesh
  )
  eval_fn = evaluate.make_eval_fn(prep.graphdef, config, prep.mesh)
  val_set = evaluate.eval_set(prep.data, 'val', config, prep.mesh)
  split_train = sharding.put_replicated(prep.data.split['train'], prep.mesh)
  if _plateau(config, rows):  # a resumed run that had stopped there
    steps = start
  bar = tqdm(
    range(start, steps),
    initial=start,
    total=steps,
    desc='train',
    disable=not files.is_writer(),
  )
  t_last, s_last, t0 = time.perf_counter(), start, time.perf_counter()
  pairs_per_s = float('nan')
  # WORKDIR/tensorboard: the rows below as TensorBoard scalars.
  tb = metric_writer.for_run(config, workdir, resume_step=start)
  done = start
  with tb, jax.transfer_guard('disallow'):
    for s in bar:
      state, logs = step_fn(state, prep.device_data, split_train)
      done = s + 1
      last = done in (steps, stop_after)
      is_eval = (
        done % config.train.eval_every == 0 or mngr.should_save(done) or last
      )
      if done % config.train.log_every and not is_eval:
        continue
      logs = {k: float(v) for k, v in jax.device_get(logs).items()}
      now = time.perf_counter()
      pairs_per_s = n_pairs * (done - s_last) / max(now - t_last, 1e-9)
      row = dict(step=done, pairs_per_s=pairs_per_s, **logs)
      if is_eval:
        with jax.transfer_guard('allow'):
          val, _ = evaluate.score(
            eval_fn, state['params'], prep.device_data, val_set
          )
          row.update({f'val_{k}': v for k, v in val.items()})
          plateau = _plateau(config, [*rows, row])
          meta = dict(prep.data.meta, pairs_seen=done * n_pairs)
          checkpoint.save(
            mngr,
            done,
            state,
            meta,
            val_spearman=val['spearman'],
            force=last or plateau,
          )
      row['wall_s'] = now - t0
      rows.append(row)
      files.append_jsonl(workdir / 'metrics.jsonl', row)
      tb.row(row)
      if is_eval:  # on disk with each checkpoint
        tb.flush()
      bar.set_postfix(loss=f'{logs["loss"]:.4g}', refresh=False)
      t_last, s_last = time.perf_counter(), done
      if done == stop_after or (is_eval and plateau):
        break
  bar.close()
  return state, pairs_per_s, eval_fn, done


def train(
  config,
  workdir: str | Path,
  *,
  data_dir: str | Path | None = None,
  stop_after: int | None = None,
  score_test: bool = True,
) -> TrainResult | None:
  """Trains (or resumes) a run in workdir and scores its test pairs.

  Args:
    config: the run's config.
    workdir: outputs: metrics.jsonl, tensorboard/ (`metric_writer`), ckpt/.
    data_dir: the workdir whose data/ and embeddings/ are read (default
      workdir): the leaked run reads the main run's.
    stop_after: stop after this step as if killed (tests of resuming);
      returns None then.
    score_test: False for runs compared on validation only (a sweep):
      test, mats and test_pairs are None.

  Returns:
    The TrainResult (nothing is written to results.json here).
  """
  workdir = paths.path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  prep = prepare(config, workdir if data_dir is None else data_dir)
  _, state = init_state(
    config,
    prep.data.meta['d_in'],
    prep.tx,
    prep.mesh,
    target_mean(config, prep.data),
  )
  ck = config.ckpt
  mngr = checkpoint.manager(workdir / 'ckpt', ck.every, ck.keep, ck.keep_best)
  state, start, rows = _restore(prep, mngr, state, workdir)
  state, pairs_per_s, eval_fn, last = _loop(
    config, prep, mngr, state, start, rows, workdir, stop_after
  )
  mngr.wait_until_finished()
  steps = int(config.train.steps)
  if stop_after is not None and stop_after < steps and last == stop_after:
    mngr.close()
    return None
  best = checkpoint.pick_step(mngr, 'best' if ck.keep_best else 'latest')
  if best is not None and best != last:
    try:
      state, _ = checkpoint.restore(mngr, best, prep.abstract, prep.data.meta)
    except checkpoint.UnreadableCheckpointError as e:
      logging.warning('scoring the final state instead: %s', e)
      best = last
  test = mats = test_pairs = None
  if score_test:
    test, mats, test_pairs = evaluate.score_test(
      eval_fn, state['params'], prep.device_data, prep.data, config, prep.mesh
    )
  mngr.close()
  vals = [r['val_spearman'] for r in rows if 'val_spearman' in r]
  return TrainResult(
    test=test,
    # The first evaluation can be NaN (constant predictions): skip it.
    val_best=float(np.nanmax(vals)) if np.isfinite(vals).any() else None,
    best_step=best,
    steps=steps,
    stopped_at=last if last < steps else None,
    pairs_per_step=pairs.batch_size(config),
    pairs_per_s=pairs_per_s,
    params=state['params'],
    rows=rows,
    mats=mats,
    data=prep.data,
    test_pairs=test_pairs,
  )
