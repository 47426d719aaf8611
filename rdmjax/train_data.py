"""A training run's data: responses, model inputs, image split, baselines.

`load_data` reads the subject's responses of `data.roi`, splits the images
(train / val / test, or the leaked variant), standardises per vertex on the
training images only, and reads the model inputs (embeddings checked
against the subject's image ids, or grayscale images). For the synthetic
subject it also reads the noiseless responses (the ceiling).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from rdmjax import pairs, sharding
from rdmjax.errors import InputError


@dataclasses.dataclass
class Data:
  """Host arrays of one run (every process holds the same).

  Attributes:
    z: [n_images, v] f32 responses, standardised on training images.
    x: model inputs: [n_images, d] f32 embeddings or [n_images, S, S] f32
      grayscale images.
    split: 'train'/'val'/'test' -> int32 image indices.
    meta: what a checkpoint must match (model, d_in, roi, metric, shapes).
    emb: [n_images, d] embeddings for the zero-shot baseline, or None.
    z_noiseless: [n_images, v] standardised noiseless responses, or None.
  """

  z: np.ndarray
  x: np.ndarray
  split: dict[str, np.ndarray]
  meta: dict[str, Any]
  emb: np.ndarray | None = None
  z_noiseless: np.ndarray | None = None


# Models whose inputs are embeddings (the others read pixels).
EMBEDDING_MODELS = ('mlp', 'concat_mlp')


def _model_meta(mc) -> dict[str, Any]:
  keys = ('name', 'hidden', 'output', 'dtype')
  if mc.name == 'concat_mlp':
    keys += ('order_free',)
  if mc.name == 'siamese_cnn':
    keys = ('name', 'channels', 'image_size', 'output', 'dtype')
  return json.loads(json.dumps({k: mc[k] for k in keys}))


def load_data(config, workdir: str | Path) -> Data:
  """Reads responses and inputs; splits and standardises (see Data)."""
  from rdmjax import data as data_lib
  from rdmjax.data import algonauts, images, synthetic

  subject = data_lib.subject_from_config(config, workdir)
  roi = config.data.roi
  x_resp = subject.responses(roi, 'train')
  n = x_resp.shape[0]
  if config.pairs.leaked:
    split = pairs.leaked_split(n, config.pairs.fractions)
  else:
    split = pairs.split_images(n, config.pairs.fractions, config.seed)
  std = algonauts.Standardizer.fit(x_resp, rows=split['train'])
  z = std(x_resp, out=_own_f32(x_resp))  # in place: one copy of [n, v]
  del x_resp
  emb = None
  if config.model.name in EMBEDDING_MODELS:
    from rdmjax.data import embeddings

    emb, _ = embeddings.read(
      data_lib.embeddings_path(config, workdir),
      split='train',
      expect_ids=subject.nsd_ids('train'),
    )
    x, d_in = emb, int(emb.shape[1])
  elif config.model.name == 'siamese_cnn':
    x = images.load_images(
      subject.image_paths('train'),
      mode='gray',
      size=config.model.image_size,
      num_workers=config.data.num_workers,
    )
    d_in = 0
  else:
    raise InputError(
      f'model.name={config.model.name!r} unknown; use mlp, concat_mlp or '
      'siamese_cnn'
    )
  z_clean = None
  if not config.data.root:
    root = data_lib.data_root(config, workdir)
    clean = synthetic.noiseless(root, subject, roi, 'train')
    # Its own standardisation, fitted on the same training rows.
    if clean is not None:
      fit = algonauts.Standardizer.fit(clean, rows=split['train'])
      z_clean = fit(clean, out=_own_f32(clean))
  meta = dict(
    model=_model_meta(config.model),
    d_in=d_in,
    roi=roi,
    metric=config.pairs.metric,
    n_images=int(n),
    n_vertices=int(z.shape[1]),
    leaked=bool(config.pairs.leaked),
    split_seed=None if config.pairs.leaked else int(config.seed),
    fractions=[float(f) for f in config.pairs.fractions],
    embeddings=(
      str(config.data.embeddings)
      if config.model.name in EMBEDDING_MODELS
      else None
    ),
    subject=subject.name,
    split={k: v.tolist() for k, v in split.items()},
  )
  return Data(z, x.astype(np.float32), split, meta, emb, z_clean)


def _own_f32(x: np.ndarray) -> np.ndarray | None:
  """x when it is a writable, contiguous float32 array (a fresh copy from
  the reader: standardise it in place), else None (a new array)."""
  ok = x.dtype == np.float32 and x.flags.writeable and x.flags.c_contiguous
  return x if ok and not isinstance(x, np.memmap) else None


def check_batch(config, data: Data, mesh) -> None:
  """Start-up checks: the output reaches the targets, the batch divides
  over devices, the split is big."""
  from rdmjax.models.mlp import check_output_range

  check_output_range(config.model.output, config.pairs.metric)
  n_dev = sharding.data_size(mesh)
  pc = config.pairs
  n_train = len(data.split['train'])
  if pc.sampler == 'block':
    if pc.block_size > n_train:
      raise InputError(
        f'pairs.block_size={pc.block_size} exceeds the {n_train} training '
        f'images: set --config.pairs.block_size<={n_train}'
      )
    n_pairs = pc.block_size * (pc.block_size - 1) // 2
    ok = [b for b in range(2, n_train + 1) if (b * (b - 1) // 2) % n_dev == 0]
    good = min(ok, key=lambda b: abs(b - pc.block_size)) if ok else None
    sharding.check_divisible(
      f'the block batch B(B-1)/2 for pairs.block_size={pc.block_size}',
      n_pairs,
      mesh,
      f'set --config.pairs.block_size={good}',
    )
  else:
    sharding.check_divisible(
      'pairs.num_pairs',
      pc.num_pairs,
      mesh,
      f'set --config.pairs.num_pairs to a multiple of {n_dev}',
    )
  t = pc.eval_tile
  sharding.check_divisible(
    f'pairs.eval_tile^2 for eval_tile={t}',
    t * t,
    mesh,
    f'set --config.pairs.eval_tile to a multiple of {n_dev}',
  )


def target_mean(config, data: Data, n: int = 256) -> float:
  """Mean target over the pairs of n random training images."""
  from rdmjax import compare, kernels

  rng = np.random.default_rng(config.seed)
  idx = data.split['train']
  pick = np.sort(rng.choice(idx, min(n, len(idx)), replace=False))
  r = kernels.rdm(data.z[pick], config.pairs.metric)
  return float(np.mean(compare.upper_triangle(r)))
