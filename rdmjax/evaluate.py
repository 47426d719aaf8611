"""Scoring held-out pairs: a fixed set of pairs per split, scored on device.

A run picks each held-out split's pairs once (`eval_set`): every unordered
pair of the split's images when there are at most `train.max_eval_pairs`
of them, else a fixed seeded random subset of that many; in the leaked
variant, its own pairs of that split (`pairs.pair_split_id`) among all
images, all or a seeded subset alike. Their targets are computed once, on
the device: in tiles of the split's RDM (`pairs.eval_tiles`) for every
pair, from the two response rows of each pair for a subset.

`make_eval_fn` compiles one program that embeds the split's images once and
predicts every pair of the set in fixed-size batches (`lax.map`); only the
predictions leave the device. `score` computes R^2, Pearson and Spearman of
the set in float64 on the host (`metrics.PairMetricsAccumulator`). Training
scores with it; `--mode=eval` (`rdmjax.stages.eval`) scores a checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rdmjax import kernels, metrics, pairs, sharding

# Response rows gathered per batch of listed pairs (two rows a pair): at
# 39548 vertices, 1024 pairs gather 324 MB.
GATHER_BYTES = 1 << 28


@dataclasses.dataclass
class EvalSet:
  """The scored pairs of one held-out split, fixed for a run.

  Attributes:
    images: [m] sorted image indices the pairs use (embedded once).
    i, j: [P] int32 image indices of the pairs (i < j).
    target: [P] f32 targets.
    n_all: the split's pairs in all (P < n_all: a seeded subset).
    pos: (pi, pj) [B, S] int32 positions into the padded images, on device.
    images_dev: [M] int32 padded image indices, on device.
  """

  images: np.ndarray
  i: np.ndarray
  j: np.ndarray
  target: np.ndarray
  n_all: int
  pos: tuple[jax.Array, jax.Array]
  images_dev: jax.Array

  @property
  def exact(self) -> bool:
    return len(self.i) == self.n_all


def unrank_pairs(k: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
  """Linear upper-triangle indices -> (a, b), a < b < m, in pdist's order."""
  k = np.asarray(k, np.int64)

  def start(a):  # linear index of (a, a + 1)
    return a * (2 * m - a - 1) // 2

  c = 2 * m - 1
  a = ((c - np.sqrt(np.maximum(c * c - 8.0 * k, 0))) // 2).astype(np.int64)
  a = np.clip(a, 0, m - 2)
  a = np.where(start(a) > k, a - 1, a)  # float rounding, either way
  a = np.where(start(a + 1) <= k, a + 1, a)
  return a, k - start(a) + a + 1


def _leaked_pairs(n: int, split_id: int, pc, seed: int) -> np.ndarray:
  """Linear indices of every pair of n images in split split_id (leaked)."""
  total = n * (n - 1) // 2
  chunk = 1 << 22
  sid = jax.jit(
    lambda a, b: pairs.pair_split_id(a, b, tuple(pc.fractions), seed)
  )
  out = []
  for s in range(0, total, chunk):
    k = np.arange(s, s + chunk, dtype=np.int64)  # fixed shape: one compile
    a, b = unrank_pairs(np.minimum(k, total - 1), n)
    hit = np.asarray(sid(a.astype(np.int32), b.astype(np.int32))) == split_id
    out.append(k[hit & (k < total)])
  return np.concatenate(out)


def pick_pairs(
  n_images: int, split_idx: np.ndarray, split_id: int, config
) -> tuple[np.ndarray | None, int]:
  """Which pairs of a split are scored.

  Returns:
    (None, n_all) for every pair of split_idx (scored in tiles), or
    ([P, 2] int32 image index pairs, n_all) for a listed set.
  """
  pc = config.pairs
  cap = int(config.train.max_eval_pairs)
  rng = np.random.default_rng([int(config.seed), split_id, 0xE7A1])
  if pc.leaked:
    k = _leaked_pairs(n_images, split_id, pc, int(config.seed))
    n_all = len(k)
    if cap and n_all > cap:
      k = np.sort(rng.choice(k, cap, replace=False))
    a, b = unrank_pairs(k, n_images)
    return np.stack([a, b], 1).astype(np.int32), n_all
  m = len(split_idx)
  n_all = m * (m - 1) // 2
  if not cap or n_all <= cap:
    return None, n_all
  a, b = unrank_pairs(np.sort(rng.choice(n_all, cap, replace=False)), m)
  return np.stack([split_idx[a], split_idx[b]], 1).astype(np.int32), n_all


def _tile_targets(device_data, split_idx, config, mesh):
  """Every pair of split_idx and its target, from tiles of the RDM."""
  rep = sharding.replicated(mesh)
  tile = int(config.pairs.eval_tile)
  fn = jax.jit(
    lambda z, rows, cols: kernels.cross_rdm(
      z[rows],
      z[cols],
      config.pairs.metric,
      config.pairs.get('precision', 'float32'),
    ),
    out_shardings=rep,
  )
  ii, jj, tt = [], [], []
  for rows, cols, same in pairs.eval_tiles(split_idx, tile):
    tp = pairs.tile_pairs(rows, cols, same, tile)
    t = np.asarray(jax.device_get(fn(device_data['z'], tp['rows'], tp['cols'])))
    keep = tp['mask'] > 0
    ii.append(tp['i'][keep])
    jj.append(tp['j'][keep])
    tt.append(t.reshape(-1)[keep])
  return np.concatenate(ii), np.concatenate(jj), np.concatenate(tt)


def _listed_targets(device_data, ij: np.ndarray, config, mesh) -> np.ndarray:
  """Targets of listed pairs from their two response rows, in batches."""
  z = device_data['z']
  per = max(8, GATHER_BYTES // (8 * z.shape[1]))
  per = -(-per // sharding.data_size(mesh)) * sharding.data_size(mesh)
  nb = -(-len(ij) // per)
  padded = np.zeros((nb * per, 2), np.int32)
  padded[: len(ij)] = ij
  padded = padded.reshape(nb, per, 2)
  metric = config.pairs.metric

  def batch(p):
    return kernels.paired(z[p[:, 0]], z[p[:, 1]], metric)

  fn = jax.jit(
    lambda p: jax.lax.map(batch, p),
    in_shardings=NamedSharding(mesh, P(None, 'data')),
    out_shardings=sharding.replicated(mesh),
  )
  return np.asarray(jax.device_get(fn(padded))).reshape(-1)[: len(ij)]


def eval_set(device_data, data, split: str, config, mesh) -> EvalSet:
  """Picks a split's scored pairs and computes their targets (once a run).

  Args:
    device_data: {'z', 'x'} on the mesh (`train.prepare`).
    data: the run's `train_data.Data`.
    split: 'val' or 'test'.
  """
  split_idx = data.split[split]
  ij, n_all = pick_pairs(
    data.z.shape[0], split_idx, pairs.SPLIT_ID[split], config
  )
  if ij is None:
    i, j, target = _tile_targets(device_data, split_idx, config, mesh)
  else:
    i, j = ij[:, 0], ij[:, 1]
    target = _listed_targets(device_data, ij, config, mesh)
  images = np.unique(np.concatenate([i, j]))
  chunk = int(config.pairs.eval_tile)
  m_pad = -(-len(images) // chunk) * chunk
  images_dev = np.full(m_pad, images[0], np.int32)
  images_dev[: len(images)] = images
  per = chunk * chunk  # pairs per prediction batch (divides over devices)
  nb = -(-len(i) // per)
  pos = []
  for v in (i, j):
    p = np.zeros(nb * per, np.int32)
    p[: len(v)] = np.searchsorted(images, v)
    pos.append(p.reshape(nb, per))
  pos_sh = NamedSharding(mesh, P(None, 'data'))
  rep = sharding.replicated(mesh)
  return EvalSet(
    images=images,
    i=i.astype(np.int32),
    j=j.astype(np.int32),
    target=target.astype(np.float32),
    n_all=int(n_all),
    pos=tuple(jax.device_put(p, pos_sh) for p in pos),
    images_dev=jax.device_put(images_dev, rep),
  )


def make_eval_fn(graphdef, config, mesh):
  """Jitted predictions of an EvalSet's pairs: [B, S] f32 (one compile a
  set shape). The images are embedded once, eval_tile at a time."""
  rep = sharding.replicated(mesh)
  pos_sh = NamedSharding(mesh, P(None, 'data'))
  chunk = int(config.pairs.eval_tile)

  def predict(params, x, images, pi, pj):
    model = nnx.merge(graphdef, params)
    xs = x[images].reshape(-1, chunk, *x.shape[1:])
    h = jax.lax.map(model.embed, xs)
    h = h.reshape(-1, h.shape[-1])
    return jax.lax.map(
      lambda ab: model.pair_head(h[ab[0]], h[ab[1]]), (pi, pj)
    ).astype(jnp.float32)

  return jax.jit(
    predict,
    in_shardings=(rep, rep, rep, pos_sh, pos_sh),
    out_shardings=rep,
  )


def score(
  eval_fn,
  params,
  device_data,
  es: EvalSet,
  keep_matrix: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
  """Scores an EvalSet's pairs.

  Returns:
    ({r2, pearson, spearman, n_pairs, n_all}, None or {'pred', 'true'}
    [m, m] matrices over es.images and 'pred_pairs', 'true_pairs' [P]);
    the matrices only when every pair of the split is scored.
  """
  pred = jax.device_get(
    eval_fn(params, device_data['x'], es.images_dev, *es.pos)
  )
  pred = np.asarray(pred, np.float32).reshape(-1)[: len(es.i)]
  acc = metrics.PairMetricsAccumulator()
  acc.update(pred, es.target)
  out: dict[str, Any] = dict(acc.result(), n_all=es.n_all)
  mats = None
  if keep_matrix and es.exact:
    m = len(es.images)
    a, b = np.searchsorted(es.images, es.i), np.searchsorted(es.images, es.j)
    mats = {'pred_pairs': pred, 'true_pairs': es.target}
    for name, v in (('pred', pred), ('true', es.target)):
      mats[name] = np.zeros((m, m))
      mats[name][a, b] = v
      mats[name][b, a] = v
  return out, mats


def score_test(eval_fn, params, device_data, data, config, mesh):
  """The test set's scores, with the test RDMs kept for figures (not if
  leaked)."""
  es = eval_set(device_data, data, 'test', config, mesh)
  return score(
    eval_fn, params, device_data, es, keep_matrix=not config.pairs.leaked
  )
