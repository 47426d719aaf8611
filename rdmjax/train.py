"""Training: one jitted step that samples pairs, makes targets and updates.

`train_and_evaluate(config, workdir)` (`--mode=train`):
  1. responses of `data.roi`, images split train / val / test
     (`pairs.split_images`), standardised on training images only;
  2. `train_steps` steps of ONE jitted, donated call each: fold the step
     into the base key, draw a batch of pairs of training images, compute
     their targets from the response rows, forward, backward, Optax update;
     pairs sharded over the mesh `data` axis, everything else replicated;
  3. every `eval_every` steps all validation pairs are scored (R^2,
     Pearson, Spearman); Orbax checkpoints keep the last N and the best by
     validation Spearman; a rerun with the same workdir resumes;
  4. the best checkpoint scores every test pair; results.json 'train',
     figures and the report section (`rdmjax.train_report`).
`evaluate(config, workdir)` (`--mode=eval`) scores a checkpoint again.
"""

from __future__ import annotations

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

from rdmjax import checkpoint, metrics, pairs, sharding
from rdmjax.errors import InputError
from rdmjax.train_data import (  # noqa: F401 - part of train's API
  Data,
  check_batch,
  load_data,
  target_mean,
)

SPLIT_ID = {'train': 0, 'val': 1, 'test': 2}
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


def loss_fn(config):
  name = config.train.loss
  if name == 'mse':
    return metrics.mse
  if name == 'pearson_mse':
    alpha = float(config.train.alpha)
    return lambda p, t, m: metrics.pearson_mse(p, t, m, alpha)
  raise InputError(f'train.loss={name!r} unknown; use mse or pearson_mse')


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
  from rdmjax.models import build_model

  model = nnx.eval_shape(
    lambda: build_model(config.model, d_in, rngs=nnx.Rngs(0))
  )
  return nnx.split(model)


def init_state(config, d_in: int, tx, mesh, bias: float = 0.0):
  """A jitted init whose outputs land replicated: (graphdef, state).

  The output layer starts at 1% of its initial weights and the mean
  training target as bias, so the first steps learn the ranking, not the
  offset (1 - r ~ 1).
  """
  from rdmjax.models import build_model

  graphdef, _ = abstract_model(config, d_in)
  rep = sharding.replicated(mesh)
  if config.model.output == 'sigmoid2':
    p = min(max(bias / 2.0, 1e-3), 1 - 1e-3)
    bias = float(np.log(p / (1 - p)))

  def init(seed):
    model = build_model(config.model, d_in, rngs=nnx.Rngs(seed))
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

  state = jax.jit(init, static_argnums=0, out_shardings=rep)(int(config.seed))
  return graphdef, state


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
    batch = {
      k: jax.lax.with_sharding_constraint(v, bsh) if k in PAIR_KEYS else v
      for k, v in batch.items()
    }

    def objective(params):
      model = nnx.merge(graphdef, params)
      pred = predict(model, data['x'], batch)
      return loss(pred, batch['target'], batch['mask']), pred

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


def make_eval_fn(graphdef, config, mesh):
  """Jitted scorer of one padded tile (`pairs.tile_pairs`): one compile."""
  rep = sharding.replicated(mesh)
  bsh = sharding.batch_sharding(mesh)
  tile_sh = {
    k: (rep if k in ('rows', 'cols') else bsh)
    for k in ('rows', 'cols', 'ri', 'cj', 'i', 'j', 'mask')
  }

  def eval_fn(params, data, tp, split_id):
    eb = pairs.eval_batch(data, tp, config, split_id=split_id)
    model = nnx.merge(graphdef, params)
    hr = model.embed(data['x'][tp['rows']])
    hc = model.embed(data['x'][tp['cols']])
    pred = model.pair_head(hr[tp['ri']], hc[tp['cj']])
    return pred, eb['target'], eb['mask']

  fn = jax.jit(
    eval_fn,
    static_argnums=3,
    in_shardings=(rep, rep, tile_sh),
    out_shardings=rep,
  )
  return fn, tile_sh


def score(
  eval_fn,
  params,
  device_data,
  split_idx: np.ndarray,
  split_id: int,
  config,
  max_pairs: int = 0,
  keep_matrix: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
  """Scores every pair of a split (or the first tiles covering max_pairs).

  Returns:
    ({r2, pearson, spearman, n_pairs}, None or {'pred', 'true'} [m, m]
    matrices over split_idx, and 'pred_pairs', 'true_pairs' [P]).
  """
  fn, tile_sh = eval_fn
  tile = int(config.pairs.eval_tile)
  acc = metrics.PairMetricsAccumulator(seed=int(config.seed))
  m = len(split_idx)
  mats = (
    {'pred': np.zeros((m, m)), 'true': np.zeros((m, m))}
    if keep_matrix
    else None
  )
  pp, tt = [], []
  for rows, cols, same in pairs.eval_tiles(split_idx, tile):
    tp = pairs.tile_pairs(rows, cols, same, tile)
    tp = {k: jax.device_put(v, tile_sh[k]) for k, v in tp.items()}
    pred, target, mask = jax.device_get(
      fn(params, device_data, tp, int(split_id))
    )
    acc.update(pred, target, mask)
    keep = mask > 0
    pp.append(pred[keep])
    tt.append(target[keep])
    if mats is not None:
      i = np.asarray(jax.device_get(tp['i']))[keep]
      j = np.asarray(jax.device_get(tp['j']))[keep]
      # split_idx is sorted: image index -> position without a Python loop.
      a, b = np.searchsorted(split_idx, i), np.searchsorted(split_idx, j)
      for name, v in (('pred', pred[keep]), ('true', target[keep])):
        mats[name][a, b] = v
        mats[name][b, a] = v
    if max_pairs and acc.n >= max_pairs:
      break
  if mats is not None:
    mats['pred_pairs'] = np.concatenate(pp)
    mats['true_pairs'] = np.concatenate(tt)
  return acc.result(), mats


def score_test(eval_fn, params, device_data, data, config):
  """Every test pair, with the test RDMs kept for figures (not if leaked)."""
  return score(
    eval_fn,
    params,
    device_data,
    data.split['test'],
    SPLIT_ID['test'],
    config,
    keep_matrix=not config.pairs.leaked,
  )


def _pairs_per_step(config) -> int:
  return pairs.batch_size(config)


def _truncate_metrics(path: Path, upto: int) -> list[dict]:
  """Keeps metrics.jsonl rows up to a resumed step (drops a lost tail)."""
  if not path.is_file():
    return []
  rows = [json.loads(line) for line in path.read_text().splitlines() if line]
  rows = [r for r in rows if r['step'] <= upto]
  if jax.process_index() == 0:
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return rows


def _write_row(path: Path, row: dict) -> None:
  if jax.process_index() == 0:
    with path.open('a') as f:
      f.write(json.dumps(row) + '\n')


def train(
  config, workdir: str | Path, *, stop_after: int | None = None
) -> dict[str, Any]:
  """Trains (or resumes) a run in workdir and scores it.

  Args:
    config: the run's config.
    workdir: outputs: metrics.jsonl, ckpt/.
    stop_after: stop after this step as if killed (tests of resuming).

  Returns:
    {'val_best', 'best_step', 'test', 'steps', 'pairs_per_s', ...} plus
    '_mats' (test RDMs) and '_data' (the Data) for the report.
  """
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data = load_data(config, workdir)
  mesh = sharding.make_mesh(config.mesh)
  check_batch(config, data, mesh)
  tx, lr_fn = make_optimizer(config)
  graphdef, state = init_state(
    config, data.meta['d_in'], tx, mesh, target_mean(config, data)
  )
  device_data = sharding.put_replicated({'z': data.z, 'x': data.x}, mesh)
  split_dev = sharding.put_replicated(data.split, mesh)
  train_split = 'train'
  step_fn = make_train_step(graphdef, tx, lr_fn, config, mesh)
  eval_fn = make_eval_fn(graphdef, config, mesh)
  ck = config.ckpt
  mngr = checkpoint.manager(workdir / 'ckpt', ck.every, ck.keep, ck.keep_best)
  abstract = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
    state,
  )
  start, rows = 0, []
  # The newest step that reads back (a damaged newer one is dropped).
  found = checkpoint.restore_newest(mngr, abstract, data.meta)
  if found is not None:
    state, meta, latest = found
    if meta.get('split') != data.meta['split']:
      raise InputError(
        f'checkpoint {workdir / "ckpt"} used another image split: use '
        'another --workdir, or the seed and fractions it was made with'
      )
    start = latest
    rows = _truncate_metrics(workdir / 'metrics.jsonl', latest)
    logging.info('resumed from step %d', latest)
  elif (workdir / 'metrics.jsonl').exists():
    _truncate_metrics(workdir / 'metrics.jsonl', -1)
  steps = int(config.train.steps)
  n_pairs = _pairs_per_step(config)
  val_idx = data.split['val']
  val_id = SPLIT_ID['val']
  t_last, s_last, t0 = time.perf_counter(), start, time.perf_counter()
  from tqdm.auto import tqdm

  bar = tqdm(
    range(start, steps),
    initial=start,
    total=steps,
    desc='train',
    disable=jax.process_index() != 0,
  )
  pairs_per_s = float('nan')
  with jax.transfer_guard('disallow'):
    for s in bar:
      state, logs = step_fn(state, device_data, split_dev[train_split])
      done = s + 1
      last = done == steps or done == stop_after
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
          val, _ = score(
            eval_fn,
            state['params'],
            device_data,
            val_idx,
            val_id,
            config,
            config.train.max_eval_pairs,
          )
        row.update({f'val_{k}': v for k, v in val.items()})
        with jax.transfer_guard('allow'):
          checkpoint.save(
            mngr,
            done,
            state,
            dict(data.meta, pairs_seen=done * n_pairs),
            val_spearman=val['spearman'],
            force=last,
          )
      row['wall_s'] = now - t0
      rows.append(row)
      _write_row(workdir / 'metrics.jsonl', row)
      bar.set_postfix(loss=f'{logs["loss"]:.4g}', refresh=False)
      t_last, s_last = time.perf_counter(), done
      if done == stop_after:
        break
  bar.close()
  mngr.wait_until_finished()
  if stop_after is not None and stop_after < steps:
    return {'stopped_at': stop_after, 'params': state['params']}
  best = checkpoint.pick_step(mngr, 'best' if ck.keep_best else 'latest')
  if best is not None and best != steps:
    try:
      state, _ = checkpoint.restore(mngr, best, abstract, data.meta)
    except checkpoint.UnreadableCheckpointError as e:
      logging.warning('scoring the final state instead: %s', e)
      best = steps
  test, mats = score_test(eval_fn, state['params'], device_data, data, config)
  vals = [r['val_spearman'] for r in rows if 'val_spearman' in r]
  mngr.close()
  return dict(
    test=test,
    # The first evaluation can be NaN (constant predictions): skip it.
    val_best=float(np.nanmax(vals)) if np.isfinite(vals).any() else None,
    best_step=best,
    steps=steps,
    pairs_per_step=n_pairs,
    pairs_per_s=pairs_per_s,
    params=state['params'],
    _rows=rows,
    _mats=mats,
    _data=data,
  )


def evaluate(config, workdir: str | Path, which: str | None = None) -> dict:
  """Scores a checkpoint on every test pair.

  Args:
    config: the run's config.
    workdir: the trained run's workdir.
    which: 'best', 'latest' or a step number; default `ckpt.eval_step`.
      'best' and 'latest' fall back to the newest readable step if the
      chosen one is damaged; a step number does not.

  Returns:
    {'step', 'val_spearman', 'test'}; also written to results.json 'eval',
    with the test RDM figures.
  """
  from rdmjax import report, train_plots

  workdir = Path(workdir)
  data = load_data(config, workdir)
  mesh = sharding.make_mesh(config.mesh)
  check_batch(config, data, mesh)
  tx, _ = make_optimizer(config)
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
  if not (workdir / 'ckpt').is_dir():
    raise InputError(
      f'no checkpoint in {workdir / "ckpt"}: train first with --mode=train'
    )
  mngr = checkpoint.manager(
    workdir / 'ckpt',
    config.ckpt.every,
    config.ckpt.keep,
    config.ckpt.keep_best,
    read_only=True,
  )
  which = str(config.ckpt.get('eval_step', 'best') if which is None else which)
  step = checkpoint.pick_step(mngr, which)
  if step is None:
    raise InputError(
      f'no finished checkpoint in {workdir / "ckpt"}: train first'
    )
  if which.strip().isdigit():
    state, meta = checkpoint.restore(mngr, step, abstract, data.meta)
  else:
    fallback = [step] + sorted(s for s in mngr.all_steps() if s != step)[::-1]
    state, meta, step = checkpoint.restore_newest(
      mngr, abstract, data.meta, fallback
    )
  device_data = sharding.put_replicated({'z': data.z, 'x': data.x}, mesh)
  eval_fn = make_eval_fn(graphdef, config, mesh)
  test, mats = score_test(eval_fn, state['params'], device_data, data, config)
  out = dict(step=step, val_spearman=meta.get('val_spearman'), test=test)
  figs = {}
  if mats is not None:
    figs = train_plots.test_figures(mats, test, workdir / 'figures', 'eval')
  report.update_results(workdir, 'eval', dict(out, figures=figs))
  logging.info('eval: %s', out)
  return out


def train_and_evaluate(config, workdir: str | Path) -> dict:
  """Trains, scores the test pairs, runs baselines; writes the report."""
  from rdmjax import train_report

  workdir = Path(workdir)
  run = train(config, workdir)
  leaked = None
  if config.train.run_leaked and not config.pairs.leaked:
    cl = config.copy_and_resolve_references()
    with cl.unlocked():
      cl.pairs.leaked = True
      cl.train.run_leaked = False
    leaked = train(cl, workdir / 'leaked')
  return train_report.write(config, workdir, run, leaked)
