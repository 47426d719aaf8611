"""The CLIP ViT image tower in Flax NNX (weights: `clip_weights`).

transformers 5 ships no Flax CLIP, so this is a compact port of
`CLIPVisionModelWithProjection`: patch embedding, class token, position
embedding, pre-LayerNorm, pre-LN transformer blocks, post-LayerNorm on the
class token, and the linear projection (no bias, no L2 normalisation: CLIP
normalises only when it forms image-text logits). Any ViT size loads through
the Hugging Face config (`CLIPVisionConfig`, or `CLIPConfig.vision_config`).

Layout is batch-first everywhere: pixels `[batch, height, width, channels]`
(NHWC, where PyTorch uses NCHW) and tokens `[batch, tokens, width]`, as in
Hugging Face's port. OpenAI's original `clip/model.py` runs its residual
blocks sequence-first `(tokens, batch, width)`, which is how THINGSvision
issue #185 took the wrong axis for the class token; here axis 0 is always
the image.

Selectable features (`layers`, names of `[batch, d]` outputs):
  'image_embeds'    projected embedding (512-d for ViT-B/32), HF `image_embeds`
  'pooled'          post-LayerNorm class token before projection, HF
                    `pooler_output` (768-d for ViT-B/32)
  'block{k}_cls'    class token after encoder block k (0-based), which is HF
                    `hidden_states[k + 1][:, 0]`
  'block{k}_mean'   mean over the patch tokens (class token excluded) after
                    block k: THINGSvision's `avg_pool` token extraction
  'embeddings_cls', 'embeddings_mean'  the same on the encoder input (after
                    pre-LayerNorm), HF `hidden_states[0]`
Blocks after the last one a request needs are not run.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rdmjax import sharding
from rdmjax.errors import InputError

_LAYER_RE = re.compile(r'^(embeddings|block(\d+))_(cls|mean)$')

# Architectures a random tower can be built from without any file on disk.
ARCHITECTURES = {
  'openai/clip-vit-base-patch32': dict(),
  'openai/clip-vit-base-patch16': dict(patch_size=16),
  'openai/clip-vit-large-patch14': dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    patch_size=14,
    projection_dim=768,
  ),
}


@dataclasses.dataclass(frozen=True)
class TowerConfig:
  """The architecture, read from a Hugging Face vision config."""

  hidden_size: int = 768
  intermediate_size: int = 3072
  num_layers: int = 12
  num_heads: int = 12
  image_size: int = 224
  patch_size: int = 32
  projection_dim: int = 512
  num_channels: int = 3
  layer_norm_eps: float = 1e-5
  hidden_act: str = 'quick_gelu'

  @property
  def num_tokens(self) -> int:
    return (self.image_size // self.patch_size) ** 2 + 1


def vision_config(hf_config: Any) -> Any:
  """Returns the `CLIPVisionConfig` of a CLIP or CLIP-vision HF config.

  A `CLIPConfig`'s projection width lives on the outer config; it is copied
  onto the vision config so that one object describes the whole tower.
  """
  if hasattr(hf_config, 'vision_config'):
    vc = hf_config.vision_config
    vc.projection_dim = hf_config.projection_dim
    return vc
  return hf_config


def tower_config(hf_config: Any) -> TowerConfig:
  """Reads a `TowerConfig` from a `CLIPVisionConfig` or `CLIPConfig`."""
  vc = vision_config(hf_config)
  if vc.hidden_act not in _ACTIVATIONS:
    raise InputError(
      f'CLIP config hidden_act={vc.hidden_act!r} is not supported; use one '
      f'of {sorted(_ACTIVATIONS)}'
    )
  return TowerConfig(
    hidden_size=vc.hidden_size,
    intermediate_size=vc.intermediate_size,
    num_layers=vc.num_hidden_layers,
    num_heads=vc.num_attention_heads,
    image_size=vc.image_size,
    patch_size=vc.patch_size,
    projection_dim=vc.projection_dim,
    num_channels=vc.num_channels,
    layer_norm_eps=vc.layer_norm_eps,
    hidden_act=vc.hidden_act,
  )


def _quick_gelu(x: jax.Array) -> jax.Array:
  return x * jax.nn.sigmoid(1.702 * x)


_ACTIVATIONS = {
  'quick_gelu': _quick_gelu,  # OpenAI CLIP
  'gelu': functools.partial(jax.nn.gelu, approximate=False),
  'gelu_new': functools.partial(jax.nn.gelu, approximate=True),
  'gelu_pytorch_tanh': functools.partial(jax.nn.gelu, approximate=True),
  'relu': jax.nn.relu,
}


def parse_layers(layers: Sequence[str], num_layers: int) -> dict[str, Any]:
  """Checks layer names; returns {name: (depth, 'cls'|'mean'|name)}.

  Depth 0 is the encoder input, depth k + 1 the output of block k, and depth
  num_layers + 1 the pooled head.
  """
  if isinstance(layers, str) or not layers:
    raise InputError(
      f'config.embed.layers={layers!r} must be a non-empty tuple of names, '
      "e.g. ('image_embeds', 'block11_cls')"
    )
  out = {}
  for name in layers:
    if name in ('image_embeds', 'pooled'):
      out[name] = (num_layers + 1, name)
      continue
    m = _LAYER_RE.match(name)
    k = -1 if m is None or m.group(2) is None else int(m.group(2))
    if m is None or k >= num_layers:
      raise InputError(
        f'CLIP layer {name!r} unknown: use image_embeds, pooled, '
        f'embeddings_cls|mean or block{{k}}_cls|mean for k in '
        f'0..{num_layers - 1}'
      )
    out[name] = (k + 1, m.group(3))
  return out


def _layer_norm(cfg: TowerConfig, dtype, rngs, d: int) -> nnx.LayerNorm:
  # Two-pass variance, as torch: E[x^2] - E[x]^2 loses digits on the
  # pre-LayerNorm's large inputs.
  return nnx.LayerNorm(
    d,
    epsilon=cfg.layer_norm_eps,
    dtype=dtype,
    use_fast_variance=False,
    rngs=rngs,
  )


class Block(nnx.Module):
  """One pre-LayerNorm transformer block (HF `CLIPEncoderLayer`)."""

  def __init__(self, cfg: TowerConfig, *, dtype, precision, rngs: nnx.Rngs):
    d = cfg.hidden_size
    lin = functools.partial(
      nnx.Linear, dtype=dtype, precision=precision, rngs=rngs
    )
    ln = functools.partial(_layer_norm, cfg, dtype, rngs)
    self.ln1 = ln(d)
    self.qkv = lin(d, 3 * d)  # q, k, v fused: one matmul instead of three
    self.out = lin(d, d)
    self.ln2 = ln(d)
    self.fc1 = lin(d, cfg.intermediate_size)
    self.fc2 = lin(cfg.intermediate_size, d)
    self.num_heads = cfg.num_heads
    self.act = cfg.hidden_act
    self.precision = precision

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [batch, tokens, d] -> [batch, tokens, d]."""
    b, t, d = x.shape
    h = self.num_heads
    qkv = self.qkv(self.ln1(x)).reshape(b, t, 3, h, d // h)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = jnp.einsum(
      'bqhc,bkhc->bhqk', q * (d // h) ** -0.5, k, precision=self.precision
    )
    # Softmax in f32 also under bf16: 50 logits per row, cheap and stable.
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    attn = jnp.einsum(
      'bhqk,bkhc->bqhc', probs.astype(v.dtype), v, precision=self.precision
    )
    x = x + self.out(attn.reshape(b, t, d))
    y = _ACTIVATIONS[self.act](self.fc1(self.ln2(x)))
    return x + self.fc2(y)


class VisionTower(nnx.Module):
  """CLIP ViT and projection (HF `CLIPVisionModelWithProjection`).

  Args:
    cfg: the architecture.
    dtype: compute dtype (parameters stay float32).
    precision: matmul precision, e.g. 'highest' for f32 on GPUs (TF32
      otherwise), None for the backend default.
    rngs: for the random initialisation (HF's scheme, roughly).
  """

  def __init__(
    self,
    cfg: TowerConfig,
    *,
    dtype: Any = jnp.float32,
    precision: str | None = None,
    rngs: nnx.Rngs,
  ):
    d, p, c = cfg.hidden_size, cfg.patch_size, cfg.num_channels
    self.cfg = cfg
    self.dtype = dtype
    # A conv with kernel = stride = patch is a matmul over flattened patches.
    self.patch = nnx.Linear(
      p * p * c,
      d,
      use_bias=False,
      dtype=dtype,
      precision=precision,
      kernel_init=nnx.initializers.normal(0.02),
      rngs=rngs,
    )
    self.class_embedding = nnx.Param(
      jax.random.normal(rngs.params(), (d,)) * d**-0.5
    )
    self.position_embedding = nnx.Param(
      jax.random.normal(rngs.params(), (cfg.num_tokens, d)) * 0.02
    )
    ln = functools.partial(_layer_norm, cfg, dtype, rngs)
    self.pre_ln = ln(d)
    self.blocks = nnx.List(
      [
        Block(cfg, dtype=dtype, precision=precision, rngs=rngs)
        for _ in range(cfg.num_layers)
      ]
    )
    self.post_ln = ln(d)
    self.projection = nnx.Linear(
      d,
      cfg.projection_dim,
      use_bias=False,
      dtype=dtype,
      precision=precision,
      rngs=rngs,
    )

  def __call__(
    self, pixels: jax.Array, layers: Sequence[str] = ('image_embeds',)
  ) -> dict[str, jax.Array]:
    """Runs the tower up to the deepest requested layer.

    Args:
      pixels: [batch, image_size, image_size, channels] normalised pixels.
      layers: feature names (module docstring).

    Returns:
      {name: [batch, d_name] f32} for every requested name.
    """
    cfg = self.cfg
    want = parse_layers(layers, cfg.num_layers)
    b, hh, ww, c = pixels.shape
    if (hh, ww, c) != (cfg.image_size, cfg.image_size, cfg.num_channels):
      raise InputError(
        f'CLIP pixels {pixels.shape} must be [batch, {cfg.image_size}, '
        f'{cfg.image_size}, {cfg.num_channels}] (NHWC): preprocess them'
      )
    p, g = cfg.patch_size, cfg.image_size // cfg.patch_size
    # [b, g, p, g, p, c] -> [b, g*g, p*p*c]: tokens row-major over the grid,
    # as torch's conv output .flatten(2); features in (ph, pw, c) order.
    x = pixels.astype(self.dtype)[:, : g * p, : g * p]
    x = x.reshape(b, g, p, g, p, c).transpose(0, 1, 3, 2, 4, 5)
    x = self.patch(x.reshape(b, g * g, p * p * c))
    cls = jnp.broadcast_to(self.class_embedding[...], (b, 1, x.shape[-1]))
    x = jnp.concatenate([cls.astype(x.dtype), x], axis=1)
    x = self.pre_ln(x + self.position_embedding[...].astype(x.dtype))
    depth_needed = max(depth for depth, _ in want.values())
    out = {}
    for depth in range(min(depth_needed, cfg.num_layers) + 1):
      if depth > 0:
        x = self.blocks[depth - 1](x)
      for name, (dd, kind) in want.items():
        if dd == depth:
          out[name] = x[:, 0] if kind == 'cls' else x[:, 1:].mean(axis=1)
    if depth_needed > cfg.num_layers:
      pooled = self.post_ln(x[:, 0])
      if 'pooled' in want:
        out['pooled'] = pooled
      if 'image_embeds' in want:
        out['image_embeds'] = self.projection(pooled)
    return {name: out[name].astype(jnp.float32) for name in layers}


def random_tower(
  hf_config: Any,
  seed: int = 0,
  dtype: Any = jnp.float32,
  precision: str | None = None,
) -> VisionTower:
  """A randomly initialised tower (tests, benchmarks)."""
  cfg = tower_config(hf_config)
  return VisionTower(cfg, dtype=dtype, precision=precision, rngs=nnx.Rngs(seed))


def make_forward(model: VisionTower, layers: Sequence[str], mesh):
  """A jitted `f(pixels [B, s, s, 3]) -> {layer: [B, d] f32}` on a mesh.

  The weights are placed replicated once and passed as a jit argument (not a
  closed-over constant, which would be baked into the program); batches are
  split over the mesh's `data` axis.
  """
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
