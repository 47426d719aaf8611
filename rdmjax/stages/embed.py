"""`--mode=embed`: a subject's images through the CLIP tower, into the cache.

  rdmjax --mode=embed --workdir=DIR [--config.embed.layers="('image_embeds',
    'block11_cls')"] [--config.embed.model=/path/to/clip]

Images are decoded and preprocessed on the host (threads, one batch ahead of
the device), exactly as transformers' `CLIPImageProcessor` does on PIL
images: resize the shortest side to `size` (bicubic, PIL), centre-crop
`crop` x `crop`, rescale by 1/255, normalise with CLIP's mean and std. The
tower runs jitted, once per batch shape: the last batch is padded to the
batch size so nothing recompiles. Batches are split over the mesh's `data`
axis (the batch size must divide over it); the weights are replicated.

Writes `WORKDIR/embeddings/clip_<layer>.npz` for every layer in
`config.embed.layers` and `WORKDIR/embeddings/clip.npz` for the first, the
file `--config.data.embeddings=clip` trains on. Rows: the train images, then
the test images, each in file order (the fMRI row order).

`--config.embed.backend=hf` runs any Hugging Face image model instead
(DINOv2, ViT, ConvNeXt, ...: `rdmjax.embed.hf_vision`, PyTorch, one
device) with its own image processor:

  rdmjax --mode=embed --workdir=DIR --config.embed.backend=hf \
    --config.embed.model=facebook/dinov2-small \
    --config.embed.hf_layers="('cls', 'mean', 'hidden_states.6')"

It writes `WORKDIR/embeddings/<name>_<layer>.npz` per layer and
`<name>.npz` for the first (name: `config.embed.hf_name`, else the last part
of the model id or folder, `random-` before it for random weights), in the
same format: the rdm stage compares them all (RSA), and
`--config.data.embeddings=WORKDIR/embeddings/<name>.npz` trains on one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from rdmjax import data as rdata
from rdmjax import paths, report, sharding
from rdmjax.data import embeddings
from rdmjax.data.images import load_images
from rdmjax.embed import clip_vision as cv
from rdmjax.embed import hf_vision
from rdmjax.embed.clip_weights import Preprocess, build_tower, preprocess
from rdmjax.errors import InputError
from rdmjax.report import embed as embed_report


def _batches(
  paths: Sequence[Path], batch: int, prep: Preprocess, num_workers: int
) -> Iterator[tuple[np.ndarray, int]]:
  """Yields (pixels [batch, s, s, 3] f32, n_real), preparing one batch ahead.

  The last batch is padded with zeros to the full batch size, so the jitted
  forward sees one shape.
  """

  def load(i):
    chunk = list(paths[i : i + batch])
    imgs = load_images(chunk, 'rgb', None, num_workers, progress=False)
    x = preprocess(list(imgs), prep, num_workers)
    pad = batch - len(chunk)
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    return x, len(chunk)

  starts = list(range(0, len(paths), batch))
  with ThreadPoolExecutor(1) as ahead:
    fut = ahead.submit(load, starts[0]) if starts else None
    for j in range(len(starts)):
      x, n = fut.result()
      if j + 1 < len(starts):
        fut = ahead.submit(load, starts[j + 1])
      yield x, n


def embed_paths(
  forward,
  paths: Sequence[Path],
  batch: int,
  prep: Preprocess,
  mesh,
  num_workers: int = 8,
  progress: bool = True,
  desc: str = 'embedding',
) -> dict[str, np.ndarray]:
  """Embeds image files: {layer: [n, d] f32}, rows in `paths` order."""
  data = sharding.batch_sharding(mesh)
  outs, pending = [], None
  bar = tqdm(total=len(paths), desc=desc, unit='img', disable=not progress)
  for x, n in _batches(paths, batch, prep, num_workers):
    y = forward(jax.device_put(x, data))
    # Pull the previous batch while this one runs on the device.
    if pending is not None:
      outs.append(
        {k: np.asarray(v)[: pending[1]] for k, v in pending[0].items()}
      )
      bar.update(pending[1])
    pending = (y, n)
  if pending is not None:
    outs.append({k: np.asarray(v)[: pending[1]] for k, v in pending[0].items()})
    bar.update(pending[1])
  bar.close()
  if not outs:
    raise InputError('embed: the subject has no images')
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _write_caches(
  workdir,
  subj,
  per_split,
  splits,
  layers,
  prep,
  desc,
  ec,
  name='clip',
  extra=None,
):
  """One cache per layer (and NAME.npz for the first): {layer: path}.

  prep: the preprocessing's description; extra: {layer: more meta}.
  """
  ids = np.concatenate([subj.nsd_ids(s) for s in splits])
  split_col = np.concatenate([[s] * subj.n_images(s) for s in splits])
  out_dir = paths.path(workdir) / 'embeddings'
  written = {}
  for i, layer in enumerate(layers):
    emb = np.concatenate([per_split[s][layer] for s in splits])
    meta = dict(
      model=desc,
      layer=layer,
      preprocessing=prep,
      subject=subj.name,
      dtype=ec.dtype,
      dim=int(emb.shape[1]),
      **(extra or {}).get(layer, {}),
    )
    names = [f'{name}_{layer}.npz'] + ([f'{name}.npz'] if i == 0 else [])
    for f in names:
      embeddings.write(out_dir / f, emb, ids, split_col, meta)
    written[layer] = str(out_dir / names[0])
  return written


def run(config: Any, workdir: str | os.PathLike) -> dict[str, Any]:
  """The `--mode=embed` stage: embeds train and test images, writes caches.

  Args:
    config: the full config (sections data, embed, mesh).
    workdir: the run folder.

  Returns:
    {'paths': {layer: file}, 'n_images': {split: n}, 'images_per_sec', ...}.
  """
  ec = config.embed
  backend = ec.get('backend', 'clip')
  if backend == 'hf':
    return _run_hf(config, workdir)
  if backend != 'clip':
    raise InputError(
      f"config.embed.backend={backend!r} unknown: use 'clip' (the Flax CLIP "
      "tower) or 'hf' (any transformers image model, PyTorch)"
    )
  layers = tuple(ec.layers)
  subj = rdata.subject_from_config(config, workdir)
  model, hf, prep, desc = build_tower(ec, config.get('seed', 0))
  cv.parse_layers(layers, hf.num_hidden_layers)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_divisible(
    'config.embed.batch_size',
    ec.batch_size,
    mesh,
    f'set it to a multiple of {sharding.data_size(mesh)}',
  )
  forward = cv.make_forward(model, layers, mesh)
  splits = [s for s in ('train', 'test') if subj.n_images(s)]
  workers = config.data.get('num_workers', 8)
  t0, per_split = time.perf_counter(), {}
  for s in splits:
    per_split[s] = embed_paths(
      forward,
      subj.image_paths(s),
      ec.batch_size,
      prep,
      mesh,
      workers,
      desc=f'embedding {s}',
    )
  seconds = time.perf_counter() - t0
  paths = _write_caches(
    workdir, subj, per_split, splits, layers, prep.describe(), desc, ec
  )
  return _finish(
    workdir,
    subj,
    per_split,
    layers,
    paths,
    seconds,
    ec,
    model=desc,
    devices=jax.device_count(),
  )


def _finish(workdir, subj, per_split, layers, paths, seconds, ec, **head):
  """The `embed` results entry and report section of either backend."""
  splits = list(per_split)
  n = {s: subj.n_images(s) for s in splits}
  result = dict(
    head,
    subject=subj.name,
    layers=list(layers),
    paths=paths,
    n_images=n,
    dims={k: int(per_split[splits[0]][k].shape[1]) for k in layers},
    seconds=seconds,
    images_per_sec=sum(n.values()) / seconds,
    batch_size=ec.batch_size,
  )
  report.update_results(workdir, 'embed', result)
  report.write_section(workdir, 'embed', embed_report.markdown(result))
  return result


def _run_hf(config: Any, workdir: str | os.PathLike) -> dict[str, Any]:
  """`run` with `config.embed.backend='hf'`: a transformers model, PyTorch."""
  ec = config.embed
  layers = tuple(ec.hf_layers)
  # The model first: a missing one stops before any data is written.
  model = hf_vision.HFVision(
    ec.model,
    layers,
    ec.dtype,
    ec.get('hf_device', 'auto'),
    ec.random_init,
    config.get('seed', 0),
  )
  subj = rdata.subject_from_config(config, workdir)
  name = ec.get('hf_name', '') or hf_vision.cache_name(ec.model, ec.random_init)
  splits = [s for s in ('train', 'test') if subj.n_images(s)]
  workers = config.data.get('num_workers', 8)

  def load(chunk):
    imgs = load_images(chunk, 'rgb', None, workers, progress=False)
    return [Image.fromarray(a) for a in imgs]

  if not splits:
    raise InputError('embed: the subject has no images')
  t0, per_split = time.perf_counter(), {}
  for s in splits:
    bar = tqdm(total=subj.n_images(s), desc=f'embedding {s}', unit='img')
    per_split[s] = hf_vision.run_batches(
      model, subj.image_paths(s), ec.batch_size, load, bar.update
    )
    bar.close()
  seconds = time.perf_counter() - t0
  extra = {k: {'pooling': model.pooling[k], 'backend': 'hf'} for k in layers}
  paths = _write_caches(
    workdir,
    subj,
    per_split,
    splits,
    layers,
    model.preprocessing,
    model.description,
    ec,
    name,
    extra,
  )
  return _finish(
    workdir,
    subj,
    per_split,
    layers,
    paths,
    seconds,
    ec,
    model=model.description,
    backend='hf',
    name=name,
    devices=1,
    device=f'{model.device} with PyTorch',
  )
