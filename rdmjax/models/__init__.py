"""Pair models: `build_model(config.model, d_in, rngs=...)`.

Every model has `embed(x) -> [n, h]` (per image), `pair_head(ha, hb) -> [P]`
(symmetric) and `__call__(a, b) == pair_head(embed(a), embed(b))`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from rdmjax.errors import InputError
from rdmjax.models.mlp import ConcatMLP, SymmetricMLP
from rdmjax.models.siamese_cnn import SiameseCNN

# Models whose inputs are embeddings (the others read pixels).
EMBEDDING_MODELS = ('mlp', 'concat_mlp')

DTYPES = {
  'float32': jnp.float32,
  'bfloat16': jnp.bfloat16,
  'bf16': jnp.bfloat16,
}


def build_model(config_model: Any, d_in: int, *, rngs: nnx.Rngs) -> nnx.Module:
  """Builds the model named by `config.model.name`.

  Args:
    config_model: the `model` config section (or the full config).
    d_in: embedding width for 'mlp' (ignored by 'siamese_cnn').
    rngs: parameter RNGs.

  Returns:
    A SymmetricMLP or SiameseCNN.
  """
  m = config_model.model if 'model' in config_model else config_model
  dtype = m.get('dtype', 'float32')
  if dtype not in DTYPES:
    raise InputError(f'model.dtype={dtype!r} unknown; use float32 or bfloat16')
  if m.name == 'mlp':
    return SymmetricMLP(
      d_in, tuple(m.hidden), m.output, dtype=DTYPES[dtype], rngs=rngs
    )
  if m.name == 'concat_mlp':
    return ConcatMLP(
      d_in,
      tuple(m.hidden),
      m.output,
      order_free=bool(m.get('order_free', True)),
      dtype=DTYPES[dtype],
      rngs=rngs,
    )
  if m.name == 'siamese_cnn':
    return SiameseCNN(
      tuple(m.channels), m.image_size, m.output, dtype=DTYPES[dtype], rngs=rngs
    )
  raise InputError(
    f'model.name={m.name!r} unknown; use mlp, concat_mlp or siamese_cnn'
  )


__all__ = ['ConcatMLP', 'SiameseCNN', 'SymmetricMLP', 'build_model']
