"""The embed stage: a subject's images through the CLIP tower, into the cache.

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
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rdmjax.errors import InputError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DTYPES = ('float32', 'bfloat16')


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """`CLIPImageProcessor`'s settings: shortest side, square crop, stats."""

  size: int = 224
  crop: int = 224
  mean: tuple[float, ...] = CLIP_MEAN
  std: tuple[float, ...] = CLIP_STD

  def describe(self) -> str:
    return (
      f'CLIPImageProcessor: RGB, resize shortest side {self.size} (PIL '
      f'bicubic), centre crop {self.crop}, x/255, mean {list(self.mean)}, '
      f'std {list(self.std)}'
    )


def preprocess_image(image: Any, prep: Preprocess = Preprocess()) -> np.ndarray:
  """One image as `CLIPImageProcessor` (PIL backend) makes it.

  Args:
    image: a PIL image or uint8 [h, w, 3] array.
    prep: the settings.

  Returns:
    [crop, crop, 3] f32 pixels (NHWC order, unlike HF's CHW).
  """
  from PIL import Image

  if not isinstance(image, Image.Image):
    image = Image.fromarray(np.asarray(image, np.uint8))
  image = image.convert('RGB')
  w, h = image.size
  # HF's get_resize_output_image_size: the long side is truncated, not
  # rounded.
  if w <= h:
    new_w, new_h = prep.size, int(prep.size * h / w)
  else:
    new_w, new_h = int(prep.size * w / h), prep.size
  a = np.asarray(image.resize((new_w, new_h), Image.Resampling.BICUBIC))
  top, left = (new_h - prep.crop) // 2, (new_w - prep.crop) // 2
  if top < 0 or left < 0:
    raise InputError(
      f'CLIP preprocessing: crop {prep.crop} exceeds resized image '
      f'{new_h}x{new_w}; use a crop no larger than the size'
    )
  a = a[top : top + prep.crop, left : left + prep.crop]
  # The same casts as HF: rescale in float64, then normalise in float32.
  x = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
  mean = np.asarray(prep.mean, np.float32)
  std = np.asarray(prep.std, np.float32)
  return (x - mean) / std


def preprocess(
  images: Sequence[Any], prep: Preprocess = Preprocess(), num_workers: int = 8
) -> np.ndarray:
  """Many images in threads (PIL releases the GIL): [n, crop, crop, 3] f32."""
  fn = functools.partial(preprocess_image, prep=prep)
  with ThreadPoolExecutor(max(1, num_workers)) as pool:
    out = list(pool.map(fn, images))
  if not out:
    return np.zeros((0, prep.crop, prep.crop, 3), np.float32)
  return np.stack(out)


def read_preprocess(folder: Path | None, image_size: int) -> Preprocess:
  """The checkpoint's preprocessor_config.json, else CLIP's at image_size."""
  f = None if folder is None else Path(folder) / 'preprocessor_config.json'
  if f is None or not f.is_file():
    return Preprocess(size=image_size, crop=image_size)
  c = json.loads(f.read_text())
  size, crop = c.get('size', image_size), c.get('crop_size', image_size)
  size = (
    size.get('shortest_edge', image_size) if isinstance(size, dict) else size
  )
  if isinstance(crop, dict):
    if crop.get('height') != crop.get('width'):
      raise InputError(f'{f}: crop_size {crop} is not square')
    crop = crop['height']
  if crop != image_size:
    raise InputError(
      f'{f}: crop_size {crop} differs from the model image_size {image_size}'
    )
  return Preprocess(
    size=int(size),
    crop=int(crop),
    mean=tuple(c.get('image_mean', CLIP_MEAN)),
    std=tuple(c.get('image_std', CLIP_STD)),
  )


def build_tower(embed_cfg: Any, seed: int = 0):
  """The tower that `config.embed` names: pretrained, or random.

  Returns:
    (tower, hf vision config, Preprocess, model description str).
  """
  import jax.numpy as jnp
  from transformers import CLIPVisionConfig

  from rdmjax.models import clip_vision as cv

  if embed_cfg.dtype not in DTYPES:
    raise InputError(
      f'config.embed.dtype={embed_cfg.dtype!r} unknown; use float32 or bfloat16'
    )
  dtype = jnp.dtype(embed_cfg.dtype)
  precision = embed_cfg.get('precision', 'highest')
  if dtype != jnp.float32 or precision in ('', 'default'):
    precision = None  # bf16 matmuls are bf16 whatever the flag
  name = embed_cfg.model
  folder = None
  if embed_cfg.random_init:
    if name in cv.ARCHITECTURES:
      hf = CLIPVisionConfig(**cv.ARCHITECTURES[name])
    else:
      folder = cv.resolve(name)
      hf = cv.vision_config(cv.read_hf_config(folder))
    model = cv.random_tower(hf, seed, dtype, precision)
    desc = f'random:{name}:seed={seed}'
  else:
    folder = cv.resolve(name)
    model, hf = cv.load_pretrained(str(folder), dtype, precision)
    desc = name
  return model, hf, read_preprocess(folder, hf.image_size), desc


def make_forward(model, layers: Sequence[str], mesh):
  """A jitted `f(pixels [B, s, s, 3]) -> {layer: [B, d] f32}`.

  The weights are placed replicated once and passed as a jit argument (not a
  closed-over constant, which would be baked into the program).
  """
  from flax import nnx

  from rdmjax import sharding

  graphdef, state = nnx.split(model)
  state = sharding.put_replicated(state, mesh)
  data = sharding.batch_sharding(mesh)
  layers = tuple(layers)

  @functools.partial(
    jax.jit,
    in_shardings=(sharding.replicated(mesh), data),
    out_shardings=data,
  )
  def fwd(state, pixels):
    return nnx.merge(graphdef, state)(pixels, layers)

  return lambda pixels: fwd(state, pixels)


def _batches(
  paths: Sequence[Path], batch: int, prep: Preprocess, num_workers: int
) -> Iterator[tuple[np.ndarray, int]]:
  """Yields (pixels [batch, s, s, 3] f32, n_real), preparing one batch ahead.

  The last batch is padded with zeros to the full batch size, so the jitted
  forward sees one shape.
  """
  from rdmjax.data.algonauts import load_images

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
  from tqdm.auto import tqdm

  from rdmjax import sharding

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


def run(config: Any, workdir: str | os.PathLike) -> dict[str, Any]:
  """The `--mode=embed` stage: embeds train and test images, writes caches.

  Args:
    config: the full config (sections data, embed, mesh).
    workdir: the run folder.

  Returns:
    {'paths': {layer: file}, 'n_images': {split: n}, 'images_per_sec', ...}.
  """
  from rdmjax import data as rdata
  from rdmjax import report, sharding
  from rdmjax.data import embeddings
  from rdmjax.models import clip_vision as cv

  ec = config.embed
  layers = tuple(ec.layers)
  subj = rdata.subject_from_config(config, workdir)
  model, hf, prep, desc = build_tower(ec, config.get('seed', 0))
  cv.parse_layers(layers, hf.num_hidden_layers)
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_divisible(
    'config.embed.batch_size', ec.batch_size, mesh,
    f'set it to a multiple of {sharding.data_size(mesh)}',
  )  # fmt: skip
  forward = make_forward(model, layers, mesh)
  splits = [s for s in ('train', 'test') if subj.n_images(s)]
  t0, per_split = time.perf_counter(), {}
  for s in splits:
    per_split[s] = embed_paths(
      forward, subj.image_paths(s), ec.batch_size, prep, mesh,
      config.data.get('num_workers', 8), desc=f'embedding {s}',
    )  # fmt: skip
  seconds = time.perf_counter() - t0
  ids = np.concatenate([subj.nsd_ids(s) for s in splits])
  split_col = np.concatenate([[s] * subj.n_images(s) for s in splits])
  out_dir = Path(workdir) / 'embeddings'
  paths = {}
  for i, layer in enumerate(layers):
    emb = np.concatenate([per_split[s][layer] for s in splits])
    meta = dict(
      model=desc, layer=layer, preprocessing=prep.describe(),
      subject=subj.name, dtype=ec.dtype, dim=int(emb.shape[1]),
    )  # fmt: skip
    names = [f'clip_{layer}.npz'] + (['clip.npz'] if i == 0 else [])
    for name in names:
      embeddings.write(out_dir / name, emb, ids, split_col, meta)
    paths[layer] = str(out_dir / names[0])
  n = {s: subj.n_images(s) for s in splits}
  result = dict(
    model=desc, layers=list(layers), paths=paths, n_images=n,
    dims={k: int(per_split[splits[0]][k].shape[1]) for k in layers},
    seconds=seconds, images_per_sec=sum(n.values()) / seconds,
    devices=jax.device_count(), batch_size=ec.batch_size,
  )  # fmt: skip
  report.update_results(workdir, 'embed', result)
  rows = '\n'.join(
    f'| {k} | {result["dims"][k]} | `{paths[k]}` |' for k in layers
  )
  report.write_section(
    workdir, 'embed',
    f'## Embeddings\n\n{desc}, {sum(n.values())} images of {subj.name} '
    f'in {seconds:.1f} s ({result["images_per_sec"]:.1f} images/s on '
    f'{jax.device_count()} devices).\n\n'
    '| layer | dim | cache |\n|---|---|---|\n'
    f'{rows}\n',
  )  # fmt: skip
  return result
