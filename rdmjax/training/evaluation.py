"""Scoring held-out pairs: a fixed set of pairs per split, scored on device.

A run picks each held-out split's pairs once (`eval_set`): every unordered
pair of the split's images when there are at most `train.max_eval_pairs`
of them, else every pair among a fixed seeded subset of its images, about
that many pairs (`pick_images`). In the leaked variant the split's pairs
are those `pairs.pair_split_id` assigns to it, among all images or a
seeded subset alike. Their targets come once from the RDM of those images
(`rdm_lib.rdm`: one matrix product, never a per-pair row gather).

`make_eval_fn` compiles one program that embeds the set's images once and
predicts every pair in fixed-size batches (`lax.map`); only the
predictions leave the device. `score` computes R^2, Pearson and Spearman of
the set in float64 on the host (`metrics.PairMetricsAccumulator`). Training
scores with it; `--mode=eval` (`rdmjax.stages.eval`) scores a checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rdmjax import sharding
from rdmjax.rsa import rdm as rdm_lib
from rdmjax.training import metrics, pairs


@dataclasses.dataclass
class EvalSet:
  """The scored pairs of one held-out split, fixed for a run.

  Attributes:
    images: [m] sorted image indices the pairs use (embedded once).
    i, j: [P] int32 image indices of the pairs (i < j).
    target: [P] f32 targets.
    n_all: the split's pairs in all (P < n_all: the pairs among a seeded
      subset of its images).
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


def pick_images(
  n_images: int, split_idx: np.ndarray, split_id: int, config
) -> tuple[np.ndarray, int]:
  """The images whose pairs (of the split) are scored, and the split's
  pairs in all.

  Every image of the split when its pairs number at most
  `train.max_eval_pairs` (0: always), else a fixed seeded subset of s
  images, s(s-1)/2 (times the split's pair fraction, leaked) about that
  many. In the leaked variant the split holds every image and its pairs
  are those `pairs.pair_split_id` assigns to it.

  Returns:
    ([s] sorted int32 image indices, n_all).
  """
  pc = config.pairs
  cap = int(config.train.max_eval_pairs)
  frac = float(pc.fractions[split_id]) if pc.leaked else 1.0
  m = len(split_idx)
  if pc.leaked:
    counts = leaked_pair_counts(n_images, tuple(pc.fractions), int(config.seed))
    n_all = counts[split_id]
  else:
    n_all = m * (m - 1) // 2
  if not cap or m * (m - 1) // 2 * frac <= cap:
    return np.asarray(split_idx, np.int32), n_all
  s = int((1 + np.sqrt(1 + 8 * cap / frac)) // 2)
  rng = np.random.default_rng([int(config.seed), split_id, 0xE7A1])
  pick = np.sort(rng.choice(split_idx, s, replace=False))
  return pick.astype(np.int32), n_all


_split_ids = jax.jit(pairs.pair_split_id, static_argnums=(2, 3))


@functools.lru_cache(maxsize=8)
def leaked_pair_counts(n: int, fractions: tuple, seed: int) -> tuple:
  """Pairs of n images that `pairs.pair_split_id` assigns to train, val
  and test (exact): one pass over row blocks on the device, shared by the
  val and test sets of a run."""
  rows = 256

  @jax.jit
  def counts(starts):
    cols = jnp.arange(n, dtype=jnp.int32)

    def block(r):  # rows r .. r + rows; those past n pair with nothing
      a = r + jnp.arange(rows, dtype=jnp.int32)
      sid = pairs.pair_split_id(a[:, None], cols[None, :], fractions, seed)
      upper = a[:, None] < cols[None, :]
      return jnp.stack(
        [jnp.sum((sid == k) & upper, dtype=jnp.int32) for k in range(3)]
      )

    return jax.lax.map(block, starts).sum(0)

  starts = np.arange(0, n, rows, dtype=np.int32)  # numpy: nothing compiled
  return tuple(int(c) for c in jax.device_get(counts(starts)))


def eval_set(data, split: str, config, mesh) -> EvalSet:
  """Picks a split's scored pairs and computes their targets (once a run).

  The targets: the RDM of the picked images' responses (`rdm_lib.rdm`:
  the host's BLAS on a CPU, the device's matrix product else), its upper
  triangle (in the leaked variant, the pairs of this split only).

  Args:
    data: the run's `train_data.Data`.
    split: 'val' or 'test'.
    mesh: the device mesh the predictions are sharded over.
  """
  pc = config.pairs
  sid = pairs.SPLIT_ID[split]
  images, n_all = pick_images(data.z.shape[0], data.split[split], sid, config)
  r = rdm_lib.rdm(
    data.z[images], pc.metric, precision=pc.get('precision', 'float32')
  )
  a, b = np.triu_indices(len(images), 1)
  if pc.leaked:
    ids = _split_ids(
      images[a], images[b], tuple(pc.fractions), int(config.seed)
    )
    keep = np.asarray(ids) == sid
    a, b = a[keep], b[keep]
  want = int(config.train.get('test_pairs', 0)) if split == 'test' else 0
  if 0 < want < len(a):
    # As many test pairs as another run's (leaked vs disjoint on equal
    # footing): a seeded subset of them.
    rng = np.random.default_rng([int(config.seed), sid, 0x7E57])
    keep = np.sort(rng.choice(len(a), want, replace=False))
    a, b = a[keep], b[keep]
  target = np.asarray(r)[a, b]
  del r
  chunk = int(pc.eval_tile)
  m_pad = -(-len(images) // chunk) * chunk
  images_dev = np.full(m_pad, images[0], np.int32)
  images_dev[: len(images)] = images
  per = chunk * chunk  # pairs per prediction batch (divides over devices)
  nb = -(-len(a) // per)
  pos = []
  for v in (a, b):
    p = np.zeros(nb * per, np.int32)
    p[: len(v)] = v
    pos.append(p.reshape(nb, per))
  pos_sh = NamedSharding(mesh, P(None, 'data'))
  return EvalSet(
    images=images,
    i=images[a],
    j=images[b],
    target=target.astype(np.float32),
    n_all=int(n_all),
    pos=tuple(jax.device_put(p, pos_sh) for p in pos),
    images_dev=jax.device_put(images_dev, sharding.replicated(mesh)),
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


def predict(eval_fn, params, device_data, es: EvalSet) -> np.ndarray:
  """[P] f32 predictions of an EvalSet's pairs (one program, on device)."""
  pred = jax.device_get(
    eval_fn(params, device_data['x'], es.images_dev, *es.pos)
  )
  return np.asarray(pred, np.float32).reshape(-1)[: len(es.i)]


def score(
  eval_fn,
  params,
  device_data,
  es: EvalSet,
  keep_matrix: bool = False,
  pred: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
  """Scores an EvalSet's pairs.

  pred: its predictions (`predict`), if made already.

  Returns:
    ({r2, pearson, spearman, n_pairs, n_all}, None or {'pred', 'true'}
    [m, m] matrices over es.images and 'pred_pairs', 'true_pairs' [P]);
    the matrices only when every pair of the split is scored.
  """
  if pred is None:
    pred = predict(eval_fn, params, device_data, es)
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


@dataclasses.dataclass
class TestPairs:
  """A run's scored test pairs: what its baselines and intervals use.

  Attributes:
    images: [m] sorted image indices the pairs use.
    i, j: [P] image indices.
    target, pred: [P] f32 true and predicted dissimilarities.
  """

  images: np.ndarray
  i: np.ndarray
  j: np.ndarray
  target: np.ndarray
  pred: np.ndarray


def score_test(eval_fn, params, device_data, data, config, mesh):
  """The test set's scores, the test RDMs for figures (not if leaked) and
  the scored pairs: (scores, mats or None, TestPairs)."""
  es = eval_set(data, 'test', config, mesh)
  pred = predict(eval_fn, params, device_data, es)
  out, mats = score(
    eval_fn, params, device_data, es, not config.pairs.leaked, pred
  )
  return out, mats, TestPairs(es.images, es.i, es.j, es.target, pred)
