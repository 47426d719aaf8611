"""The reference study's Siamese CNN: two shared conv layers per image.

Input: grayscale images, min-max normalised to [0, 1], `image_size` square.
Each image goes through conv 3x3 -> relu -> max-pool 2, twice (weights
shared by both images of a pair), is flattened (keeping the spatial layout
that early visual cortex is retinotopic in) and projected to an embedding.
The pair head sees `[|ua - ub|, ua * ub]`, symmetric in the two images, then
dense -> relu -> dense -> output ('linear' or 'sigmoid2' = 2 * sigmoid, the
range of 1 - Pearson r). The study trained it with
`alpha * (1 - pearson) + (1 - alpha) * MSE` (rdmjax.training.losses.pearson_mse).
As in the MLP, `embed` runs once per image, so block batches pay for the
convolutions of B images, not of B(B-1) pair members.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from rdmjax.errors import InputError
from rdmjax.models.mlp import apply_output, check_output


class SiameseCNN(nnx.Module):
  """Predicts a pair's dissimilarity from two grayscale images."""

  def __init__(
    self,
    channels: Sequence[int] = (16, 32),
    image_size: int = 128,
    output: str = 'linear',
    *,
    embed_dim: int = 128,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    channels = tuple(int(c) for c in channels)
    if len(channels) != 2 or min(channels) < 1:
      raise InputError(
        f'model.channels={channels}: give 2 positive widths, e.g. (16, 32)'
      )
    if image_size % 4:
      raise InputError(
        f'model.image_size={image_size} must be divisible by 4 (two 2x pools)'
      )
    check_output(output)
    self.image_size, self.output, self.dtype = image_size, output, dtype
    kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
    self.conv1 = nnx.Conv(1, channels[0], (3, 3), **kw)
    self.conv2 = nnx.Conv(channels[0], channels[1], (3, 3), **kw)
    flat = (image_size // 4) ** 2 * channels[1]
    self.proj = nnx.Linear(flat, embed_dim, **kw)
    self.head = nnx.Linear(2 * embed_dim, embed_dim, **kw)
    self.out = nnx.Linear(embed_dim, 1, **kw)

  def embed(self, img: jax.Array) -> jax.Array:
    """Per-image tower.

    Args:
      img: [n, H, W] or [n, H, W, 1] grayscale in [0, 1], H = W = image_size.

    Returns:
      [n, embed_dim] in the compute dtype.
    """
    if img.ndim == 3:
      img = img[..., None]
    if img.shape[1:] != (self.image_size, self.image_size, 1):
      raise InputError(
        f'image shape {tuple(img.shape[1:])} != ({self.image_size}, '
        f'{self.image_size}, 1); resize to model.image_size, grayscale'
      )
    x = img.astype(self.dtype)
    for conv in (self.conv1, self.conv2):
      x = nnx.max_pool(nnx.relu(conv(x)), (2, 2), strides=(2, 2))
    return nnx.relu(self.proj(x.reshape(x.shape[0], -1)))

  def pair_head(self, ua: jax.Array, ub: jax.Array) -> jax.Array:
    """[P, e], [P, e] -> [P] f32, bitwise symmetric in (ua, ub)."""
    h = jnp.concatenate([jnp.abs(ua - ub), ua * ub], axis=-1)
    return apply_output(self.out(nnx.relu(self.head(h))), self.output)

  def __call__(self, xa: jax.Array, xb: jax.Array) -> jax.Array:
    """[P, H, W(, 1)] image pairs -> [P] f32."""
    return self.pair_head(self.embed(xa), self.embed(xb))
