"""Pair throughput: `rdmjax --mode=bench --config=configs/bench.py:suite=pairs`.

Pairs per second of three ways to feed the pair MLP, at three stages:

  variants  block    B images, their B(B-1)/2 pairs, targets from ONE
                     matrix product of the B response rows, B embeddings
                     through the first layer (what training uses);
            uniform  P independent pairs on device, targets by gathering
                     two response rows per pair, two embeddings per pair;
            naive    the reference study's way: pairs drawn and their rows
                     gathered on the host (numpy), shipped to the device
                     (targets there, by `rdm_lib.paired`).
  stages    sampler     the batch alone (indices and targets);
            step        forward, backward, Adam on a batch made beforehand;
            end_to_end  both, as a training step runs them.

Responses `[n, v]` and embeddings `[n, e]` are random (compute only, as
maxtext's synthetic dataset). Row gathers copy 2 x v floats per pair, so the
uniform variant gets at most `bench.gather_mb` of rows per call and the
naive one at most `bench.naive_pairs` pairs, gathered into preallocated
host buffers (their own pair counts; pairs/s stays comparable). Figures are
printed as measured, block first; the baselines after it carry
`block_speedup`, block's pairs/s over theirs at the same stage, same run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from rdmjax import sharding
from rdmjax.bench import time_fn
from rdmjax.rsa import rdm as rdm_lib
from rdmjax.training import loop as train
from rdmjax.training import pairs


def _config(config, sampler: str, num_pairs: int):
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.model.name = 'mlp'
    c.pairs.sampler = sampler
    c.pairs.num_pairs = int(num_pairs)
    c.pairs.leaked = False
    c.optim.clip_norm = 0.0
  return c


def _host_batch(rng, z, x, idx, bufs):
  """The naive sampler: numpy pairs, per-pair row gathers into bufs."""
  n_pairs = bufs['mask'].shape[0]
  i = rng.choice(idx, n_pairs)
  j = rng.choice(idx, n_pairs)
  j = np.where(i == j, idx[(np.searchsorted(idx, j) + 1) % len(idx)], j)
  for name, src, rows in (
    ('xa', x, i),
    ('xb', x, j),
    ('za', z, i),
    ('zb', z, j),
  ):
    np.take(src, rows, axis=0, out=bufs[name])
  return bufs


def _fixed_step(graphdef, tx, mesh):
  """Forward, backward, Adam on a given batch (block, uniform or naive)."""
  rep = sharding.replicated(mesh)

  def step(state, x, batch):
    def objective(params):
      model = nnx.merge(graphdef, params)
      if 'xa' in batch:
        pred = model(batch['xa'], batch['xb'])
      else:
        pred = train.predict(model, x, batch)
      return jnp.mean(batch['mask'] * jnp.square(pred - batch['target']))

    loss, grads = jax.value_and_grad(objective)(state['params'])
    updates, opt = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    return dict(state, params=params, opt_state=opt), loss

  return jax.jit(step, in_shardings=(rep, rep, None), donate_argnums=0)


def _record(variant, stage, n_pairs, t, **extra) -> dict[str, Any]:
  return dict(
    suite='pairs',
    variant=variant,
    stage=stage,
    pairs_per_call=int(n_pairs),
    median_s=t['median_s'],
    pairs_per_s=n_pairs / t['median_s'],
    **extra,
  )


def _measure(variant, config, data, dev, host, mesh, n_pairs, repeats):
  """Times one variant's sampler, fixed-batch step and full step.

  Yields (stage, timing, loss) as each is measured.
  """
  rng, z, x, idx = host
  e = x.shape[1]
  sampler = 'block' if variant == 'block' else 'uniform'
  c = _config(config, sampler, n_pairs)
  tx, lr = train.make_optimizer(c)
  graphdef, state = train.init_state(c, e, tx, mesh, 1.0)
  bsh = pairs.batch_sharding(mesh, c)
  fixed = _fixed_step(graphdef, tx, mesh)
  if variant == 'naive':
    pair_sh = sharding.batch_sharding(mesh)
    metric = c.pairs.metric

    @jax.jit
    def targets(b):
      out = {k: b[k] for k in ('xa', 'xb', 'mask')}
      return dict(out, target=rdm_lib.paired(b['za'], b['zb'], metric))

    bufs = {
      k: np.empty((n_pairs, a.shape[1]), np.float32)
      for k, a in (('xa', x), ('xb', x), ('za', z), ('zb', z))
    }
    bufs['mask'] = np.ones(n_pairs, np.float32)

    def sample(targets=targets):
      hb = _host_batch(rng, z, x, idx, bufs)
      return targets(jax.device_put(hb, pair_sh))

    batch = sample()
    yield 'sampler', time_fn(sample, repeats=repeats), None

    def e2e(state, fixed=fixed, sample=sample):
      return fixed(state, data['x'], sample())

  else:
    make = jax.jit(
      lambda key, step, c=c: pairs.make_batch(key, step, data, dev['idx'], c),
      out_shardings=bsh,
    )
    key = jax.random.key(0)
    batch = make(key, 0)
    yield 'sampler', time_fn(make, key, 1, repeats=repeats), None
    full = train.make_train_step(graphdef, tx, lr, c, mesh)

    def e2e(state, full=full):
      return full(state, data, dev['idx'])

  # Steps donate the state: thread it through the timed calls.
  holder = {'s': state}

  def run_fixed(fixed=fixed, batch=batch):
    holder['s'], loss = fixed(holder['s'], data['x'], batch)
    return loss

  def run_e2e(e2e=e2e):
    holder['s'], logs = e2e(holder['s'])
    return logs

  t_step = time_fn(run_fixed, repeats=repeats)
  loss = float(jax.device_get(run_fixed()))
  yield 'step', t_step, loss
  yield 'end_to_end', time_fn(run_e2e, repeats=repeats), loss


def run(config) -> Iterator[dict[str, Any]]:
  """All nine figures (3 variants x 3 stages), block first."""
  b = config.bench
  n, v, e = int(b.n), int(b.d), int(b.emb_dim)
  bs = int(config.pairs.block_size)
  p_block = bs * (bs - 1) // 2
  mesh = sharding.make_mesh(config.mesh)
  k = sharding.data_size(mesh)
  cap = max(k, (int(b.gather_mb) << 20) // (8 * v) // k * k)
  p_gather = min(p_block, cap)
  p_naive = min(p_gather, max(k, int(b.naive_pairs) // k * k))
  rng = np.random.default_rng(0)
  z = rng.standard_normal((n, v), np.float32)
  x = rng.standard_normal((n, e), np.float32)
  idx = np.arange(n, dtype=np.int32)
  dev = sharding.put_replicated({'z': z, 'x': x, 'idx': idx}, mesh)
  data = {'z': dev['z'], 'x': dev['x']}
  common = dict(
    n_images=n,
    n_vertices=v,
    emb_dim=e,
    block_size=bs,
    dtype=config.model.dtype,
    hidden=list(config.model.hidden),
    metric=config.pairs.metric,
  )
  block = {}
  host = (rng, z, x, idx)
  sizes = {'block': p_block, 'uniform': p_gather, 'naive': p_naive}
  for variant, n_pairs in sizes.items():
    for stage, t, loss in _measure(
      variant, config, data, dev, host, mesh, n_pairs, b.repeats
    ):
      rec = _record(variant, stage, n_pairs, t, loss=loss, **common)
      if variant == 'block':
        block[stage] = rec['pairs_per_s']
      else:
        rec['block_speedup'] = block[stage] / rec['pairs_per_s']
      yield rec
