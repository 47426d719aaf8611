"""Any Hugging Face image model, through transformers' PyTorch code.

The embed stage's second backend (`config.embed.backend='hf'`): whatever
`transformers.AutoModel` loads (DINOv2, ViT, DeiT, BEiT, ConvNeXt, Swin,
ResNet, ...; CLIP- or SigLIP-style checkpoints run their `vision_model`),
preprocessed by the checkpoint's own `AutoImageProcessor` (its PIL
implementation where it has one: `load_processor`), as THINGSvision
and Net2Brain offer. It writes the same embedding cache as the Flax CLIP
tower, which stays the fast path for CLIP (jitted, sharded over the mesh);
this one runs eagerly in PyTorch on one device (CUDA when torch sees one,
else the CPU) and needs torch installed.

Weights come from a local folder or the Hugging Face cache, never the
network (`resolve`). The folder needs config.json, the weights and
preprocessor_config.json.

Layers (names of `[n, d]` float32 outputs):
  'pooler_output'     the model's own pooled output, where it has one (ViT:
                      tanh head on the class token; DINOv2 and CLIP: the
                      final-LayerNorm class token; ConvNeXt: LayerNorm of
                      the spatial mean; ResNet: the global average pool)
  'cls'               `last_hidden_state[:, 0]`: token models with a class
                      token only
  'mean'              `last_hidden_state` averaged over the patch tokens
                      (leading class, distillation and register tokens
                      excluded, as the CLIP tower's `block{k}_mean`), or
                      over height and width for convolutional [n, c, h, w]
                      maps
  'hidden_states.K'   the same mean of `hidden_states[K]` (0 = the
                      embedding output, K = the K-th block or stage; ViTs
                      apply a final LayerNorm after the last one, so the
                      last hidden state is not `last_hidden_state`)
  'hidden_states.K.cls'  token 0 of `hidden_states[K]` (class token models)

Leading tokens are counted from the shapes: a sequence of t tokens on an
image of h x w pixels with patch size p holds (h // p) * (w // p) patch
tokens and t minus that (0 to 16) leading ones. Where that does not fit (no
`patch_size`, or merged patches as in Swin's later stages) every token
counts as a patch and 'cls' is refused.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rdmjax.embed import hub
from rdmjax.errors import InputError

_LAYER_RE = re.compile(
  r'^(pooler_output|cls|mean|hidden_states\.(\d+)(\.cls)?)$'
)
LAYER_HELP = (
  "'pooler_output', 'cls', 'mean', 'hidden_states.K' or 'hidden_states.K.cls'"
)
MAX_PREFIX = 16  # leading non-patch tokens at most (class, registers, ...)
# The preprocessor settings a cache's meta names.
_PREP_KEYS = (
  'do_convert_rgb',
  'do_resize',
  'size',
  'resample',
  'crop_pct',
  'do_center_crop',
  'crop_size',
  'do_rescale',
  'rescale_factor',
  'do_normalize',
  'image_mean',
  'image_std',
)
_DTYPES = ('float32', 'bfloat16', 'bf16')


def parse_layers(layers: Sequence[str]) -> dict[str, tuple[str, int | None]]:
  """Checks layer names: {name: (kind, K)}, kind 'pooler', 'cls' or 'mean'.

  K is None for `last_hidden_state` (or the pooler), else the hidden state.
  """
  if isinstance(layers, str) or not len(layers):
    raise InputError(
      f'config.embed.hf_layers={layers!r}: give a tuple of layer names, '
      f'each {LAYER_HELP}'
    )
  out = {}
  for name in layers:
    m = _LAYER_RE.match(str(name))
    if not m:
      raise InputError(
        f'embed layer {name!r} unknown for the hf backend: use {LAYER_HELP} '
        '(K = 0 for the embedding output, 1.. for the blocks or stages)'
      )
    if name == 'pooler_output':
      out[name] = ('pooler', None)
    elif m.group(2) is None:
      out[name] = (name, None)
    else:
      out[name] = ('cls' if m.group(3) else 'mean', int(m.group(2)))
  return out


def _not_found(name: str) -> InputError:
  return InputError(
    f'image model {name} not found locally: run `hf download {name}` on a '
    'machine with network (it lands in the Hugging Face cache), or set '
    '--config.embed.model=/path/to/dir holding config.json, the weights '
    'and preprocessor_config.json'
  )


def resolve(name_or_dir: str, cache_dir: str | None = None) -> Path:
  """The model's folder: a local dir, or a hub id's cached snapshot.

  Never makes a network call (as `clip_weights.resolve`); a missing model
  or file raises a one-line `InputError`.
  """
  path = hub.local_folder(
    name_or_dir, cache_dir, 'facebook/dinov2-small', _not_found
  )
  for need, what in (
    ('config.json', 'config.json'),
    (
      'preprocessor_config.json',
      'preprocessor_config.json (save the '
      "model's image processor there: AutoImageProcessor.save_pretrained)",
    ),
  ):
    if not (path / need).is_file():
      raise InputError(f'image model folder {path} has no {what}')
  return path


def _torch():
  try:
    # PyTorch, on first use: only the hf backend and references need it.
    import torch
  except ImportError:
    raise InputError(
      "config.embed.backend='hf' runs transformers' PyTorch models: install "
      "torch (pip install torch), or use config.embed.backend='clip'"
    ) from None
  return torch


@contextlib.contextmanager
def _quiet_transformers():
  """No weight-loading progress bars or info lines while loading."""
  # transformers, on first use: heavy, and only some stages need it.
  from transformers.utils import logging as hf_logging

  bars = hf_logging.is_progress_bar_enabled()
  level = hf_logging.get_verbosity()
  hf_logging.disable_progress_bar()
  hf_logging.set_verbosity_error()
  try:
    yield
  finally:
    hf_logging.set_verbosity(level)
    if bars:
      hf_logging.enable_progress_bar()


def load_processor(folder: Path) -> Any:
  """The folder's `AutoImageProcessor`, the PIL implementation where there
  is one: the reference preprocessing, whether torchvision is installed or
  not (its fast processors resize slightly differently)."""
  # transformers, on first use: heavy, and only some stages need it.
  import transformers

  auto = transformers.AutoImageProcessor
  major = int(transformers.__version__.split('.')[0])
  try:  # transformers 5 picks torchvision when installed; 4 the slow one
    if major >= 5:
      return auto.from_pretrained(folder, local_files_only=True, backend='pil')
    return auto.from_pretrained(folder, local_files_only=True, use_fast=False)
  except (ValueError, KeyError, TypeError):  # no PIL processor: its default
    return auto.from_pretrained(folder, local_files_only=True)


def describe_processor(proc: Any) -> str:
  """The processor's class and the settings that shape the pixels."""
  d = proc.to_dict()
  keep = {k: d[k] for k in _PREP_KEYS if d.get(k) is not None}
  return f'{type(proc).__name__}: ' + json.dumps(
    keep, sort_keys=True, default=str
  )


def _pick_device(torch, device: str) -> str:
  if device == 'auto':
    return 'cuda' if torch.cuda.is_available() else 'cpu'
  if device not in ('cpu', 'cuda') and not device.startswith('cuda:'):
    raise InputError(
      f"config.embed.hf_device={device!r}: use 'auto', 'cpu' or 'cuda'"
    )
  if device.startswith('cuda') and not torch.cuda.is_available():
    raise InputError(
      f'config.embed.hf_device={device!r} but torch sees no CUDA device: '
      "use 'auto' or 'cpu'"
    )
  return device


def _flat_pool(x, kind: str, pixel_hw: tuple[int, int], patch: Any, name: str):
  """[n, d] of one output: 'cls' (token 0) or 'mean' (patch tokens or h, w).

  Returns (tensor, pooling description).
  """
  if x.ndim == 4:  # conv map [n, c, h, w]
    if kind == 'cls':
      raise InputError(
        f"embed layer {name!r}: this model's output is a convolutional map "
        f'{tuple(x.shape[1:])} with no class token: use the mean or '
        'pooler_output'
      )
    return x.mean(dim=(2, 3)), f'mean over {x.shape[2]}x{x.shape[3]} positions'
  if x.ndim == 2:
    return x, 'as the model gives it'
  if x.ndim != 3:
    raise InputError(
      f'embed layer {name!r}: output of shape {tuple(x.shape)} is neither '
      'tokens [n, t, d] nor a map [n, c, h, w]'
    )
  t = x.shape[1]
  prefix = 0
  if patch is not None:
    ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
    extra = t - (pixel_hw[0] // ph) * (pixel_hw[1] // pw)
    prefix = extra if 0 <= extra <= MAX_PREFIX else 0
  if kind == 'cls':
    if prefix < 1:
      raise InputError(
        f'embed layer {name!r}: no class token found ({t} tokens, all '
        'patches): use the mean or pooler_output'
      )
    return x[:, 0], f'token 0 of {t}'
  skip = {0: '', 1: ' (token 0 excluded)'}.get(
    prefix, f' (tokens 0-{prefix - 1} excluded)'
  )
  return x[:, prefix:].mean(dim=1), f'mean over {t - prefix} tokens{skip}'


class HFVision:
  """A loaded image model with its processor: `self(images) -> {layer: f32}`.

  Args:
    name_or_dir: a folder or a cached hub id (`resolve`).
    layers: names (see the module docstring).
    dtype: 'float32' or 'bfloat16' (weights and activations).
    device: 'auto' (CUDA if torch has one, else CPU), 'cpu' or 'cuda'.
    random_init: the architecture with random weights (seeded), not the
      checkpoint's.
    seed: torch's seed for random_init.
  """

  def __init__(
    self,
    name_or_dir: str,
    layers: Sequence[str],
    dtype: str = 'float32',
    device: str = 'auto',
    random_init: bool = False,
    seed: int = 0,
  ):
    self.layers = parse_layers(layers)
    if dtype not in _DTYPES:
      raise InputError(
        f'config.embed.dtype={dtype!r} unknown; use float32 or bfloat16'
      )
    torch = _torch()
    # transformers, on first use: heavy, and only some stages need it.
    import transformers

    self.torch = torch
    self.dtype = torch.float32 if dtype == 'float32' else torch.bfloat16
    self.device = _pick_device(torch, str(device))
    folder = resolve(name_or_dir)
    self.folder = folder
    try:
      with _quiet_transformers():
        self.processor = load_processor(folder)
        if random_init:
          cfg = transformers.AutoConfig.from_pretrained(
            folder, local_files_only=True
          )
          torch.manual_seed(seed)
          model = transformers.AutoModel.from_config(cfg)
          missing = []
        else:
          model, info = transformers.AutoModel.from_pretrained(
            folder, local_files_only=True, output_loading_info=True
          )
          missing = sorted(info.get('missing_keys', ()))
    except (OSError, ValueError, KeyError) as e:
      msg = ' '.join(str(e).split())[:300]
      raise InputError(
        f'image model {name_or_dir} ({folder}) does not load with '
        f'transformers AutoModel / AutoImageProcessor: {msg}'
      ) from None
    # Multimodal checkpoints (CLIP, SigLIP, ...): the image tower alone.
    module = model
    if getattr(model.config, 'vision_config', None) is not None and hasattr(
      model, 'vision_model'
    ):
      module = model.vision_model
    self._pooler_missing = bool(missing) and all('pooler' in k for k in missing)
    if missing and not self._pooler_missing:
      raise InputError(
        f'image model {name_or_dir}: the checkpoint lacks {len(missing)} '
        f'weights the architecture needs (e.g. {missing[:3]}); they would '
        'be random: use a checkpoint of this architecture'
      )
    self.module = module.to(self.device, self.dtype).eval()
    cfg = getattr(module, 'config', model.config)
    cfg = getattr(cfg, 'vision_config', None) or cfg
    self.patch = getattr(cfg, 'patch_size', None)
    self.model_type = model.config.model_type
    self.description = (
      f'random:{name_or_dir}:seed={seed}' if random_init else str(name_or_dir)
    )
    self.preprocessing = describe_processor(self.processor)
    self.pooling: dict[str, str] = {}
    self._hidden = any(k is not None for _, k in self.layers.values())

  def preprocess(self, images: Sequence[Any]) -> Any:
    """PIL images or uint8 [h, w, 3] arrays -> pixel_values [n, 3, h, w]."""
    if not len(images):
      raise InputError('embed: no images to embed')
    try:
      out = self.processor(images=list(images), return_tensors='pt')
    except (ValueError, TypeError) as e:
      msg = ' '.join(str(e).split())[:300]
      raise InputError(
        f'the image processor of {self.description} failed on a batch of '
        f'{len(images)} images: {msg}'
      ) from None
    return out['pixel_values']

  def forward(self, pixel_values: Any) -> dict[str, np.ndarray]:
    """Preprocessed pixels -> {layer: [n, d] float32}."""
    torch = self.torch
    x = pixel_values.to(self.device, self.dtype)
    with torch.inference_mode():
      try:
        out = self.module(
          pixel_values=x, output_hidden_states=self._hidden, return_dict=True
        )
      except (TypeError, ValueError) as e:
        msg = ' '.join(str(e).split())[:300]
        raise InputError(
          f'image model {self.description} ({self.model_type}) does not run '
          f'on pixel_values alone: {msg}'
        ) from None
      hw = tuple(x.shape[-2:])
      res = {}
      for name, (kind, k) in self.layers.items():
        if kind == 'pooler':
          y = getattr(out, 'pooler_output', None)
          if y is None or self._pooler_missing:
            why = (
              'its checkpoint has no pooler weights'
              if (self._pooler_missing)
              else 'it has no pooler_output'
            )
            raise InputError(
              f"embed layer 'pooler_output': {self.model_type} model "
              f"{self.description}: {why}; use 'cls' or 'mean'"
            )
          y, how = y.reshape(y.shape[0], -1), 'pooler_output'
        else:
          if k is None:
            h = out.last_hidden_state
          else:
            hs = out.hidden_states
            if k >= len(hs):
              raise InputError(
                f'embed layer {name!r}: {self.description} has hidden '
                f'states 0 to {len(hs) - 1}'
              )
            h = hs[k]
          y, how = _flat_pool(h, kind, hw, self.patch, name)
        self.pooling.setdefault(name, how)
        res[name] = y.float().cpu().numpy()
    return res

  def __call__(self, images: Sequence[Any]) -> dict[str, np.ndarray]:
    return self.forward(self.preprocess(images))


def batches(
  items: Iterable[Any], size: int, load: Callable[[list], Any]
) -> Iterator[tuple[Any, int]]:
  """(load(chunk), len(chunk)) per chunk of `size`, loading one ahead in a
  thread (decoding and preprocessing overlap the model's forward)."""
  if size < 1:
    raise InputError(f'config.embed.batch_size={size}: use 1 or more')
  it = iter(items)

  def take():
    chunk = []
    for x in it:
      chunk.append(x)
      if len(chunk) == size:
        break
    return (load(chunk), len(chunk)) if chunk else None

  with ThreadPoolExecutor(1) as ahead:
    fut = ahead.submit(take)
    while (got := fut.result()) is not None:
      fut = ahead.submit(take)
      yield got


def run_batches(
  model: HFVision,
  items: Iterable[Any],
  batch_size: int,
  load: Callable[[list], Sequence[Any]] = list,
  progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
  """Embeds items (images, or what `load` turns into images) in batches."""
  outs = []
  for pix, n in batches(items, batch_size, lambda c: model.preprocess(load(c))):
    outs.append(model.forward(pix))
    if progress is not None:
      progress(n)
  if not outs:
    raise InputError('embed: no images to embed')
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def embed_images(
  model_dir_or_id: str,
  images: Iterable[Any],
  layers: Sequence[str] = ('pooler_output',),
  batch_size: int = 64,
  dtype: str = 'float32',
  device: str = 'auto',
) -> dict[str, np.ndarray]:
  """Images (PIL or uint8 [h, w, 3]) through a Hugging Face image model.

  Returns:
    {layer: [n, d] float32}, rows in the images' order.
  """
  model = HFVision(model_dir_or_id, layers, dtype, device)
  return run_batches(model, images, batch_size)


def cache_name(name_or_dir: str, random_init: bool = False) -> str:
  """A file-name stem for a model: the last part of its id or folder."""
  p = Path(str(name_or_dir).rstrip('/'))
  stem = re.sub(r'[^A-Za-z0-9._-]+', '_', p.name).strip('._') or 'hf'
  if stem in ('clip', 'synthetic'):  # not the names of the other sources
    stem = f'hf-{stem}'
  return f'random-{stem}' if random_init else stem
