"""CLIP from Hugging Face files: weights, config, preprocessing, the tower.

`build_tower(config.embed)` gives the tower `config.embed` names (pretrained
from a local folder or the HF cache, never the network; or random weights
of a named architecture), with its preprocessing. The weight conversion maps
`CLIPModel` / `CLIPVisionModelWithProjection` state dicts onto
`rdmjax.embed.clip_vision.VisionTower`; `Preprocess` does exactly what
transformers' `CLIPImageProcessor` does on PIL images.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image
from safetensors.numpy import load_file

from rdmjax.embed import hub
from rdmjax.embed.clip_vision import (
  ARCHITECTURES,
  TowerConfig,
  VisionTower,
  random_tower,
  tower_config,
  vision_config,
)
from rdmjax.errors import InputError
from rdmjax.models import DTYPES

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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
  # transformers, on first use: heavy, and only some stages need it.
  from transformers import CLIPVisionConfig

  if embed_cfg.dtype not in DTYPES:
    raise InputError(
      f'config.embed.dtype={embed_cfg.dtype!r} unknown; use float32 or bfloat16'
    )
  dtype = jnp.dtype(DTYPES[embed_cfg.dtype])
  precision = embed_cfg.get('precision', 'highest')
  if dtype != jnp.float32 or precision in ('', 'default'):
    precision = None  # bf16 matmuls are bf16 whatever the flag
  name = embed_cfg.model
  folder = None
  if embed_cfg.random_init:
    if name in ARCHITECTURES:
      hf = CLIPVisionConfig(**ARCHITECTURES[name])
    else:
      folder = resolve(name)
      hf = vision_config(read_hf_config(folder))
    model = random_tower(hf, seed, dtype, precision)
    desc = f'random:{name}:seed={seed}'
  else:
    folder = resolve(name)
    model, hf = load_pretrained(str(folder), dtype, precision)
    desc = name
  return model, hf, read_preprocess(folder, hf.image_size), desc


def _t(w: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(w.T)  # torch Linear [out, in] -> [in, out]


def convert_state_dict(
  sd: Mapping[str, np.ndarray], cfg: TowerConfig
) -> dict[tuple, np.ndarray]:
  """Maps HF CLIP vision weights to this module's parameter paths.

  Args:
    sd: a state dict of `CLIPModel`, `CLIPVisionModelWithProjection` (keys
      `vision_model.*` and `visual_projection.weight`), as numpy arrays.
    cfg: the architecture (sets the patch shape).

  Returns:
    {parameter path: float32 array}.
  """
  sd = {k: np.asarray(v, np.float32) for k, v in sd.items()}
  need = ('vision_model.embeddings.class_embedding', 'visual_projection.weight')
  missing = [k for k in need if k not in sd]
  if missing:
    raise InputError(
      f'CLIP checkpoint lacks {missing}: use a CLIPModel or '
      'CLIPVisionModelWithProjection checkpoint (with visual_projection)'
    )
  v = 'vision_model.'
  w = sd[v + 'embeddings.patch_embedding.weight']  # [d, c, p, p]
  out = {
    ('patch', 'kernel'): w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]),
    ('class_embedding',): sd[v + 'embeddings.class_embedding'],
    ('position_embedding',): sd[v + 'embeddings.position_embedding.weight'],
    ('projection', 'kernel'): _t(sd['visual_projection.weight']),
  }
  lns = (('pre_ln', 'pre_layrnorm'), ('post_ln', 'post_layernorm'))
  for ours, theirs in lns:
    out[(ours, 'scale')] = sd[f'{v}{theirs}.weight']
    out[(ours, 'bias')] = sd[f'{v}{theirs}.bias']
  for i in range(cfg.num_layers):
    pre = f'{v}encoder.layers.{i}.'
    att = pre + 'self_attn.'
    blk = ('blocks', i)
    out[blk + ('qkv', 'kernel')] = np.concatenate(
      [_t(sd[f'{att}{n}_proj.weight']) for n in 'qkv'], axis=1
    )
    out[blk + ('qkv', 'bias')] = np.concatenate(
      [sd[f'{att}{n}_proj.bias'] for n in 'qkv']
    )
    linears = (
      ('out', att + 'out_proj'),
      ('fc1', pre + 'mlp.fc1'),
      ('fc2', pre + 'mlp.fc2'),
    )
    for ours, theirs in linears:
      out[blk + (ours, 'kernel')] = _t(sd[theirs + '.weight'])
      out[blk + (ours, 'bias')] = sd[theirs + '.bias']
    for ours, theirs in (('ln1', 'layer_norm1'), ('ln2', 'layer_norm2')):
      out[blk + (ours, 'scale')] = sd[f'{pre}{theirs}.weight']
      out[blk + (ours, 'bias')] = sd[f'{pre}{theirs}.bias']
  return out


def from_state_dict(
  sd: Mapping[str, np.ndarray],
  hf_config: Any,
  dtype: Any = jnp.float32,
  precision: str | None = None,
) -> VisionTower:
  """Builds a `VisionTower` holding the weights of an HF state dict."""
  cfg = tower_config(hf_config)
  params = convert_state_dict(sd, cfg)
  abstract = nnx.eval_shape(
    lambda: VisionTower(cfg, dtype=dtype, precision=precision, rngs=nnx.Rngs(0))
  )
  graphdef, state = nnx.split(abstract)
  flat = []
  for path, var in state.flat_state():
    arr = params.get(path)
    if arr is None or arr.shape != var.shape:
      got = None if arr is None else arr.shape
      raise InputError(
        f'CLIP checkpoint: {".".join(map(str, path))} has shape {got}, the '
        f'config wants {var.shape}: the config.json does not match the weights'
      )
    flat.append((path, var.replace(jnp.asarray(arr))))
  return nnx.merge(graphdef, nnx.State.from_flat_path(flat))


def _not_found(name: str) -> InputError:
  return InputError(
    f'CLIP weights for {name} not found locally: run `hf download {name}` '
    '(or `huggingface-cli download ...`) on a machine with network, or set '
    '--config.embed.model=/path/to/local/dir with config.json and '
    'model.safetensors'
  )


def resolve(name_or_dir: str, cache_dir: str | None = None) -> Path:
  """Finds a checkpoint folder: a local dir or the HF hub cache, offline.

  Never makes a network call; a missing checkpoint raises `InputError` with
  the command that fetches it.
  """
  path = Path(name_or_dir).expanduser()
  snap = hub.local_folder(
    name_or_dir, cache_dir, 'openai/clip-vit-base-patch32', _not_found
  )
  if path.is_dir():
    if not (path / 'config.json').is_file():
      raise InputError(f'CLIP checkpoint dir {path} has no config.json')
    return path
  if not (snap / 'config.json').is_file() or not _weight_files(snap):
    raise _not_found(name_or_dir)
  return snap


def _weight_files(folder: Path) -> list[Path]:
  st = sorted(folder.glob('*.safetensors'))
  return st or sorted(folder.glob('pytorch_model*.bin'))


def read_state_dict(folder: Path) -> dict[str, np.ndarray]:
  """Reads safetensors (numpy only) or PyTorch `.bin` files (needs torch)."""
  files = _weight_files(folder)
  if not files:
    raise InputError(
      f'CLIP checkpoint dir {folder} holds no model.safetensors or '
      'pytorch_model.bin'
    )
  sd = {}
  for f in files:
    if f.suffix == '.safetensors':
      sd.update(load_file(str(f)))
    else:
      try:
        # PyTorch, on first use: only the hf backend and references need it.
        import torch
      except ImportError:
        raise InputError(
          f'{f} is a PyTorch file and torch is not installed: install torch '
          'or convert it to model.safetensors'
        ) from None
      tensors = torch.load(f, map_location='cpu', weights_only=True)
      sd.update({k: t.float().numpy() for k, t in tensors.items()})
  return sd


def read_hf_config(folder: Path) -> Any:
  """`CLIPConfig` or `CLIPVisionConfig` from a folder's config.json."""
  # transformers, on first use: heavy, and only some stages need it.
  from transformers import CLIPConfig, CLIPVisionConfig

  kind = json.loads((folder / 'config.json').read_text()).get('model_type')
  if kind == 'clip':
    return CLIPConfig.from_pretrained(folder)
  if kind == 'clip_vision_model':
    return CLIPVisionConfig.from_pretrained(folder)
  raise InputError(
    f'{folder}/config.json has model_type={kind!r}; want clip or '
    'clip_vision_model'
  )


def load_pretrained(
  name_or_dir: str,
  dtype: Any = jnp.float32,
  precision: str | None = None,
  cache_dir: str | None = None,
) -> tuple[VisionTower, Any]:
  """Loads HF CLIP weights from a local folder or the hub cache, offline.

  Args:
    name_or_dir: a folder with config.json and weights, or a hub id whose
      snapshot is in the cache (e.g. 'openai/clip-vit-base-patch32').
    dtype: compute dtype.
    precision: matmul precision (see `VisionTower`).
    cache_dir: the hub cache (default: huggingface_hub's).

  Returns:
    (tower, the `CLIPVisionConfig` with the projection width).
  """
  folder = resolve(name_or_dir, cache_dir)
  hf_config = vision_config(read_hf_config(folder))
  model = from_state_dict(read_state_dict(folder), hf_config, dtype, precision)
  return model, hf_config
