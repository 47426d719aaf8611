"""Image-disjoint splits and pair batches made on device.

A subject has ~10k images, so ~50M pairs: no pair table is ever built on the
host. Images are split first (train / val / test), then pairs are drawn
inside one split, in the jitted step:

- block batches: B images of a split, all B(B-1)/2 pairs among them; their
  targets come from ONE matrix product over the B response rows, and a model
  can embed the B images once (see `rdmjax.models.mlp`);
- uniform batches: P independent pairs (the per-pair row gather baseline);
- evaluation (`rdmjax.training.evaluation`): a fixed set of a held-out
  split's pairs (all of them, or those among a seeded subset of its images),
  scored once each;
- `leaked`: the reference study's mistake, kept to measure it. Every split
  holds every image and the PAIRS are assigned to splits by a hash, so a test
  image is seen in training (in other pairs), though no test pair is.

Targets are dissimilarities of standardised response rows `z: [n_images, v]`
(standardised per vertex on training-image statistics by the caller), any
metric of `rdmjax.rsa.rdm`, computed there (`cross_rdm`, `paired`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rdmjax.errors import InputError
from rdmjax.rsa import rdm as rdm_lib

SPLITS = ('train', 'val', 'test')
SPLIT_ID = {name: k for k, name in enumerate(SPLITS)}  # pair_split_id's codes


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
  f = tuple(float(x) for x in fractions)
  if len(f) != 3 or min(f) < 0 or abs(sum(f) - 1) > 1e-6:
    raise InputError(
      f'pairs.fractions={tuple(fractions)} must be 3 non-negative numbers '
      '(train, val, test) summing to 1, e.g. (0.8, 0.1, 0.1)'
    )
  return f


def split_images(
  n_images: int,
  fractions: Sequence[float] = (0.8, 0.1, 0.1),
  seed: int = 0,
) -> dict[str, np.ndarray]:
  """Splits images (not pairs) into train / val / test, seeded.

  Args:
    n_images: number of images.
    fractions: train, val, test fractions summing to 1.
    seed: the permutation seed.

  Returns:
    {'train', 'val', 'test'}: sorted int32 image indices, disjoint, covering
    range(n_images).
  """
  f = _check_fractions(fractions)
  n_train = int(round(f[0] * n_images))
  n_val = int(round(f[1] * n_images))
  sizes = (n_train, n_val, n_images - n_train - n_val)
  for name, size in zip(SPLITS, sizes):
    if size < 2:
      raise InputError(
        f'split {name!r} gets {size} of {n_images} images (fractions '
        f'{f}); a split needs >= 2 images: use more images or a larger '
        'fraction'
      )
  perm = np.random.default_rng(seed).permutation(n_images)
  bounds = np.cumsum((0,) + sizes)
  return {
    name: np.sort(perm[bounds[k] : bounds[k + 1]]).astype(np.int32)
    for k, name in enumerate(SPLITS)
  }


def leaked_split(
  n_images: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, np.ndarray]:
  """The WRONG split, only to measure leakage: every split holds every image.

  Pairs, not images, are assigned to splits by `pair_split_id`, which
  `make_batch` and `rdmjax.training.evaluation` apply as a mask when `pairs.leaked` is set.

  Returns:
    {'train', 'val', 'test'}: each arange(n_images) int32.
  """
  _check_fractions(fractions)
  if n_images < 2:
    raise InputError(f'n_images={n_images}: pairs need >= 2 images')
  idx = np.arange(n_images, dtype=np.int32)
  return {name: idx for name in SPLITS}


def _fmix32(h: jax.Array) -> jax.Array:
  # MurmurHash3 finaliser: a bijection on uint32 with good avalanche.
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def pair_split_id(
  i: jax.Array,
  j: jax.Array,
  fractions: Sequence[float] = (0.8, 0.1, 0.1),
  seed: int = 0,
) -> jax.Array:
  """Assigns each unordered pair to a split by a hash (the leaked variant).

  Args:
    i: [P] int image indices.
    j: [P] int image indices.
    fractions: train, val, test fractions of pairs.
    seed: hash seed.

  Returns:
    [P] int32: 0 train, 1 val, 2 test; symmetric in (i, j).
  """
  f = _check_fractions(fractions)
  lo = jnp.minimum(i, j).astype(jnp.uint32)
  hi = jnp.maximum(i, j).astype(jnp.uint32)
  h = _fmix32(jnp.uint32(seed & 0xFFFFFFFF) + jnp.uint32(0x9E3779B9))
  h = _fmix32(_fmix32(h ^ lo) ^ hi)
  u = (h >> 8).astype(jnp.float32) * (1.0 / (1 << 24))  # uniform [0, 1)
  return (u >= f[0]).astype(jnp.int32) + (u >= f[0] + f[1]).astype(jnp.int32)


def sample_block(
  key: jax.Array, split_idx: jax.Array, block_size: int
) -> jax.Array:
  """Draws `block_size` distinct images of a split.

  Args:
    key: PRNG key.
    split_idx: [m] int32 image indices of the split.
    block_size: B, static.

  Returns:
    [B] int32 image indices, without replacement.
  """
  m = split_idx.shape[0]
  if m < block_size:
    raise InputError(
      f'pairs.block_size={block_size} exceeds the {m} images of the split; '
      f'set --config.pairs.block_size<={m} or use pairs.sampler=uniform'
    )
  pos = jax.random.permutation(key, m)[:block_size]
  return jnp.asarray(split_idx)[pos].astype(jnp.int32)


def block_pairs(block_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Positions (ii < jj) of the B(B-1)/2 pairs of a block, static.

  Returns:
    ii, jj: [B(B-1)/2] int32, the strict upper triangle (row-major).
  """
  ii, jj = np.triu_indices(block_size, k=1)
  return ii.astype(np.int32), jj.astype(np.int32)


def block_targets(
  z_rows: jax.Array, metric: str, precision: str = 'float32'
) -> jax.Array:
  """All pair targets of a block from one matrix product.

  Args:
    z_rows: [B, v] f32 standardised response rows of the block's images.
    metric: a metric of `rdmjax.rsa.rdm.METRICS`.
    precision: one of `rdmjax.rsa.rdm.PRECISIONS`.

  Returns:
    [B, B] f32 dissimilarity matrix (index with `block_pairs`).
  """
  return rdm_lib.cross_rdm(z_rows, z_rows, metric, precision)


def sample_uniform(
  key: jax.Array, split_idx: jax.Array, num_pairs: int
) -> tuple[jax.Array, jax.Array]:
  """Draws P independent pairs of distinct images of a split.

  Args:
    key: PRNG key.
    split_idx: [m] int32 image indices of the split, m >= 2.
    num_pairs: P, static.

  Returns:
    i, j: [P] int32 image indices with i != j.
  """
  m = split_idx.shape[0]
  if m < 2:
    raise InputError(f'a split of {m} image(s) has no pairs; needs >= 2')
  ka, kb = jax.random.split(key)
  a = jax.random.randint(ka, (num_pairs,), 0, m)
  # j from the other m - 1 images: skip over a, so i != j by construction.
  b = jax.random.randint(kb, (num_pairs,), 0, m - 1)
  b = b + (b >= a)
  idx = jnp.asarray(split_idx)
  return idx[a].astype(jnp.int32), idx[b].astype(jnp.int32)


def pair_targets(
  z: jax.Array, i: jax.Array, j: jax.Array, metric: str
) -> jax.Array:
  """Targets by gathering two response rows per pair (the naive baseline).

  Args:
    z: [n_images, v] f32 standardised responses.
    i: [P] int image indices.
    j: [P] int image indices.
    metric: a metric of `rdmjax.rsa.rdm.METRICS`.

  Returns:
    [P] f32 dissimilarities.
  """
  return rdm_lib.paired(z[i], z[j], metric)


def _pairs_cfg(cfg: Any) -> tuple[Any, int]:
  """Accepts the full config or its `pairs` section; returns (pairs, seed)."""
  if 'pairs' in cfg:
    return cfg.pairs, int(cfg.get('seed', 0))
  return cfg, 0


def batch_size(cfg: Any) -> int:
  """Pairs per training batch: B(B-1)/2 (block) or P (uniform)."""
  pc, _ = _pairs_cfg(cfg)
  if pc.sampler == 'block':
    n = pc.block_size * (pc.block_size - 1) // 2
  elif pc.sampler == 'uniform':
    n = pc.num_pairs
  else:
    raise InputError(
      f'pairs.sampler={pc.sampler!r} unknown; use block or uniform'
    )
  return n


def make_batch(
  key: jax.Array,
  step: jax.Array | int,
  data: Mapping[str, jax.Array],
  split_idx: jax.Array,
  cfg: Any,
  *,
  split_id: int = 0,
) -> dict[str, jax.Array]:
  """One training batch of pairs, made on device (jit with cfg static).

  Args:
    key: the base PRNG key; the step is folded in here.
    step: the step number (traced is fine).
    data: {'z': [n_images, v] f32 standardised responses}.
    split_idx: [m] int32 image indices of the split to pair within.
    cfg: the full config (or its `pairs` section): sampler, block_size,
      num_pairs, metric, precision, leaked, fractions (and top-level seed,
      the leak hash seed).
    split_id: with `pairs.leaked`, which pair split the mask keeps (0 train).

  Returns:
    'i', 'j': [P] int32 image indices (i != j); 'target': [P] f32;
    'mask': [P] f32, 1 = use the pair (all ones unless leaked).
    Block sampler also: 'block': [B] int32 images, 'bi', 'bj': [P] int32
    positions of i and j in 'block' (embed the B images once, then pair).
  """
  pc, seed = _pairs_cfg(cfg)
  metric = pc.metric
  precision = pc.get('precision', 'float32')
  key = jax.random.fold_in(key, step)
  z = data['z']
  if pc.sampler == 'block':
    block = sample_block(key, split_idx, pc.block_size)
    ii, jj = block_pairs(pc.block_size)
    t = block_targets(z[block], metric, precision)
    batch = {
      'i': block[ii],
      'j': block[jj],
      'target': t[ii, jj],
      'block': block,
      'bi': jnp.asarray(ii),
      'bj': jnp.asarray(jj),
    }
  elif pc.sampler == 'uniform':
    i, j = sample_uniform(key, split_idx, pc.num_pairs)
    batch = {'i': i, 'j': j, 'target': pair_targets(z, i, j, metric)}
  else:
    raise InputError(
      f'pairs.sampler={pc.sampler!r} unknown; use block or uniform'
    )
  n = batch['i'].shape[0]
  if pc.leaked:
    sid = pair_split_id(batch['i'], batch['j'], pc.fractions, seed)
    batch['mask'] = (sid == split_id).astype(jnp.float32)
  else:
    batch['mask'] = jnp.ones((n,), jnp.float32)
  return batch


def batch_sharding(mesh: jax.sharding.Mesh, cfg: Any, axis: str = 'data'):
  """out_shardings for `make_batch`: pairs split over `axis`, block replicated.

  Returns:
    A dict with make_batch's keys -> NamedSharding.
  """
  pc, _ = _pairs_cfg(cfg)
  keys = ['i', 'j', 'target', 'mask']
  if pc.sampler == 'block':
    keys += ['bi', 'bj']
  out = {k: NamedSharding(mesh, P(axis)) for k in keys}
  if pc.sampler == 'block':
    out['block'] = NamedSharding(mesh, P())
  return out
