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
from absl import logging

from rdmjax import data as data_lib
from rdmjax import sharding
from rdmjax.data import algonauts, embeddings, images, synthetic
from rdmjax.errors import InputError
from rdmjax.models import EMBEDDING_MODELS
from rdmjax.models.mlp import check_output_range
from rdmjax.rsa import rdm as rdm_lib
from rdmjax.training import pairs


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
    z_noiseless: [n_images, v] standardised noiseless responses (the test
      images' rows; every row when leaked; zeros elsewhere), or None.
    noise_ceiling: [v] the subject's noise ceiling (fraction) of the ROI's
      vertices, for the official test images only (test_images=official
      and test_split/noise_ceiling/ present), else None.
  """

  z: np.ndarray
  x: np.ndarray
  split: dict[str, np.ndarray]
  meta: dict[str, Any]
  emb: np.ndarray | None = None
  z_noiseless: np.ndarray | None = None
  noise_ceiling: np.ndarray | None = None


def _model_meta(mc) -> dict[str, Any]:
  keys = ('name', 'hidden', 'output', 'dtype')
  if mc.name == 'concat_mlp':
    keys += ('order_free',)
  if mc.name == 'siamese_cnn':
    keys = ('name', 'channels', 'image_size', 'output', 'dtype')
  return json.loads(json.dumps({k: mc[k] for k in keys}))


TEST_IMAGES = ('split', 'official')


def _split(config, n: int) -> dict[str, np.ndarray]:
  pc = config.pairs
  if pc.leaked:
    return pairs.leaked_split(n, pc.fractions)
  split = pairs.split_images(n, pc.fractions, config.seed)
  if _official(config):
    # The official test images are the test set: the split's test share
    # trains too.
    train = np.sort(np.concatenate([split['train'], split['test']]))
    split = {'train': train, 'val': split['val']}
  return split


def _official(config) -> bool:
  how = config.pairs.get('test_images', 'split')
  if how not in TEST_IMAGES:
    raise InputError(
      f'pairs.test_images={how!r}: use split (a split of the training '
      'images) or official (the test images, where test_fmri/ exists)'
    )
  if how == 'official' and config.pairs.leaked:
    raise InputError('pairs.test_images=official has no leaked variant')
  return how == 'official'


def load_data(config, workdir: str | Path) -> Data:
  """Reads responses and inputs; splits and standardises (see Data).

  With `pairs.test_images='official'` (post-challenge data, test_fmri/),
  the test set is the subject's official test images (3 repeats each),
  their rows appended after the training images'; else a seeded split of
  the training images.
  """
  subject = data_lib.subject_from_config(config, workdir)
  roi = config.data.roi
  official = _official(config)
  z, split, n = _standardised(config, subject, roi, official)
  parts = ('train', 'test') if official else ('train',)
  x, d_in, emb = _model_inputs(config, workdir, subject, parts)
  z_clean = None
  if not config.data.root:
    z_clean = _noiseless(config, workdir, subject, roi, split, n, z.shape)
  meta = dict(
    model=_model_meta(config.model),
    d_in=d_in,
    roi=roi,
    metric=config.pairs.metric,
    n_images=int(z.shape[0]),
    n_vertices=int(z.shape[1]),
    leaked=bool(config.pairs.leaked),
    split_seed=None if config.pairs.leaked else int(config.seed),
    fractions=[float(f) for f in config.pairs.fractions],
    test_images='official' if official else 'split',
    embeddings=(
      str(config.data.embeddings)
      if config.model.name in EMBEDDING_MODELS
      else None
    ),
    subject=subject.name,
    split={k: v.tolist() for k, v in split.items()},
  )
  nc = None
  if official and subject.noise_ceiling is not None:
    mask = subject.roi_mask(roi)
    nc = np.concatenate([c[m] for c, m in zip(subject.noise_ceiling, mask)])
  return Data(z, x.astype(np.float32), split, meta, emb, z_clean, nc)


def _standardised(config, subject, roi: str, official: bool):
  """(z [n_images, v] f32 standardised on the training images, the split,
  n training rows); official test rows after the training rows."""
  x_resp = subject.responses(roi, 'train')
  n = x_resp.shape[0]
  split = _split(config, n)
  if official:
    x_test = subject.responses(roi, 'test')  # InputError if not released
    n_test = x_test.shape[0]
    x_resp = np.concatenate([x_resp, x_test])
    del x_test
    split['test'] = np.arange(n, n + n_test, dtype=np.int32)
  std = algonauts.Standardizer.fit(x_resp, rows=split['train'])
  z = std(x_resp, out=_own_f32(x_resp))  # in place: one copy of [n, v]
  return z, split, n


def _model_inputs(config, workdir, subject, parts):
  """(model inputs: embeddings [n, d] or gray images [n, s, s], d_in, the
  embeddings for the baselines or None)."""

  def read_emb():
    return np.concatenate(
      [
        embeddings.read(
          data_lib.embeddings_path(config, workdir),
          split=s,
          expect_ids=subject.nsd_ids(s),
        )[0]
        for s in parts
      ]
    )

  if config.model.name in EMBEDDING_MODELS:
    emb = read_emb()
    return emb, int(emb.shape[1]), emb
  if config.model.name != 'siamese_cnn':
    raise InputError(
      f'model.name={config.model.name!r} unknown; use mlp, concat_mlp or '
      'siamese_cnn'
    )
  x = images.load_images(
    [f for s in parts for f in subject.image_paths(s)],
    mode='gray',
    size=config.model.image_size,
    num_workers=config.data.num_workers,
  )
  emb = None
  try:  # the embedding baselines beside a pixel model, where they exist
    emb = read_emb()
  except InputError as e:
    logging.info('no embedding baselines: %s', e)
  return x, 0, emb


def _noiseless(config, workdir, subject, roi, split, n_train, shape):
  """The synthetic subject's noiseless responses, standardised with the
  statistics of their own training rows (read a chunk at a time), kept
  only for the test images (every image, leaked): [n, v] with the other
  rows never written, so never resident (np.zeros maps them lazily)."""
  root = data_lib.data_root(config, workdir)

  def read(rows, part='train'):
    return synthetic.noiseless(root, subject, roi, part, rows)

  if read(np.arange(1)) is None:
    return None
  fit = algonauts.Standardizer.fit_chunks(read, split['train'])
  out = np.zeros(shape, np.float32)
  test = np.asarray(split['test'])
  if config.pairs.leaked:
    test = np.arange(n_train)
  own = test[test < n_train]
  if own.size:
    out[own] = fit(read(own))
  extra = test[test >= n_train] - n_train  # official test images
  if extra.size:
    out[extra + n_train] = fit(read(extra, 'test'))
  return out


def _own_f32(x: np.ndarray) -> np.ndarray | None:
  """x when it is a writable, contiguous float32 array (a fresh copy from
  the reader: standardise it in place), else None (a new array)."""
  ok = x.dtype == np.float32 and x.flags.writeable and x.flags.c_contiguous
  return x if ok and not isinstance(x, np.memmap) else None


def check_batch(config, data: Data, mesh) -> None:
  """Start-up checks: the output reaches the targets, the batch divides
  over devices, the split is big."""
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
  rng = np.random.default_rng(config.seed)
  idx = data.split['train']
  pick = np.sort(rng.choice(idx, min(n, len(idx)), replace=False))
  return rdm_lib.rdm_mean(data.z[pick], config.pairs.metric)
