"""A symmetric MLP over image embeddings: f(a, b) == f(b, a) exactly.

The first layer is applied per IMAGE, not per pair: `embed(x) = x W1`. The
pair features are then symmetric in the two embeddings,

  relu(ha + hb + b1)  and  |ha - hb|      (1 to 3 hidden layers)
  [a + b, |a - b|, a * b]                 (0 hidden layers: linear model)

and IEEE arithmetic makes them bitwise symmetric (a + b == b + a,
|a - b| == |b - a|, a * b == b * a), so every later layer sees the same
input for (a, b) and (b, a): symmetry by construction, not by training.

Why block batches make the first layer cheap: a block of B images holds
B(B-1)/2 pairs; `embed` runs on the B images once (B * d * h flops) and the
pairs only index its rows, where a concatenating MLP would run the
widest layer on 2 * B(B-1)/2 rows: (B - 1) times the work (255x at B=256).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from rdmjax.errors import InputError

OUTPUTS = ('linear', 'sigmoid2')


def apply_output(y: jax.Array, output: str) -> jax.Array:
  """[P, 1] -> [P] f32: identity or 2 * sigmoid (the range of 1 - r)."""
  y = y[..., 0].astype(jnp.float32)
  if output == 'sigmoid2':
    return 2.0 * jax.nn.sigmoid(y)
  return y


def check_output(output: str) -> None:
  if output not in OUTPUTS:
    raise InputError(
      f'model.output={output!r} unknown; use one of {", ".join(OUTPUTS)}'
    )


def check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
  """0 to 3 positive hidden widths, as a tuple of ints."""
  hidden = tuple(int(h) for h in hidden)
  if len(hidden) > 3 or any(h < 1 for h in hidden):
    raise InputError(
      f'model.hidden={hidden}: use 0 to 3 positive widths, e.g. (512,)'
    )
  return hidden


# The range of each target metric, and of each output.
METRIC_RANGE = {
  'correlation': (0.0, 2.0),
  'cosine': (0.0, 2.0),
  'euclidean': (0.0, float('inf')),
  'sqeuclidean': (0.0, float('inf')),
}
OUTPUT_RANGE = {'linear': (-float('inf'), float('inf')), 'sigmoid2': (0, 2)}


def check_output_range(output: str, metric: str) -> None:
  """Fails where the output cannot reach every target value (sigmoid2 caps
  predictions at 2: Euclidean targets above 2 would be silently clipped)."""
  check_output(output)
  lo, hi = OUTPUT_RANGE[output]
  t_lo, t_hi = METRIC_RANGE.get(metric, (-float('inf'), float('inf')))
  if t_lo < lo or t_hi > hi:
    raise InputError(
      f'model.output={output!r} ranges over ({lo:g}, {hi:g}) but '
      f'pairs.metric={metric!r} targets range over [{t_lo:g}, {t_hi:g}]: '
      'use --config.model.output=linear'
    )


class SymmetricMLP(nnx.Module):
  """Predicts a pair's dissimilarity from two image embeddings.

  Attributes:
    d_in: embedding width d.
    hidden: hidden widths, 0 to 3 layers; the first is the per-image layer.
    output: 'linear' or 'sigmoid2'.
  """

  def __init__(
    self,
    d_in: int,
    hidden: Sequence[int] = (512,),
    output: str = 'linear',
    *,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    hidden = check_hidden(hidden)
    check_output(output)
    self.d_in, self.hidden, self.output, self.dtype = (
      d_in,
      hidden,
      output,
      dtype,
    )

    def dense(a, b, **kw):
      return nnx.Linear(
        a, b, dtype=dtype, param_dtype=jnp.float32, rngs=rngs, **kw
      )

    if hidden:
      self.first = dense(d_in, hidden[0], use_bias=False)
      self.first_bias = nnx.Param(jnp.zeros((hidden[0],), jnp.float32))
      widths = (2 * hidden[0],) + hidden[1:]
    else:
      self.first = None
      widths = (3 * d_in,)
    self.layers = nnx.List(
      [dense(a, b) for a, b in zip(widths[:-1], widths[1:])]
    )
    self.out = dense(widths[-1], 1)

  def embed(self, x: jax.Array) -> jax.Array:
    """Per-image first layer (identity with 0 hidden layers).

    Args:
      x: [n, d] embeddings.

    Returns:
      [n, h] (h = hidden[0], or d) in the compute dtype.
    """
    x = x.astype(self.dtype)
    return x if self.first is None else self.first(x)

  def pair_head(self, ha: jax.Array, hb: jax.Array) -> jax.Array:
    """Symmetric pair features, then the remaining layers.

    Args:
      ha: [P, h] embed() of the first images.
      hb: [P, h] embed() of the second images.

    Returns:
      [P] f32 predicted dissimilarity, bitwise symmetric in (ha, hb).
    """
    if self.first is None:
      feats = [ha + hb, jnp.abs(ha - hb), ha * hb]
    else:
      b1 = self.first_bias[...].astype(ha.dtype)
      feats = [nnx.relu(ha + hb + b1), jnp.abs(ha - hb)]
    h = jnp.concatenate(feats, axis=-1)
    for layer in self.layers:
      h = nnx.relu(layer(h))
    return apply_output(self.out(h), self.output)

  def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
    """[P, d], [P, d] -> [P] f32; embeds a and b in separate, equal-shape
    calls so that swapping them swaps bitwise-identical rows."""
    return self.pair_head(self.embed(a), self.embed(b))


class ConcatMLP(nnx.Module):
  """The reference study's pair model: an MLP on the concatenation [a, b].

  0 hidden layers is its "linear" model. With `order_free` (the default)
  the prediction is the mean over both orders, (f([a, b]) + f([b, a])) / 2,
  symmetric by construction (the study's own suggestion, as training on
  both orders would approximate); without it, f([a, b]) as the study ran
  it, which depends on the order of the two images.

  Attributes:
    d_in: embedding width d.
    hidden: hidden widths, 0 to 3 layers.
    output: 'linear' or 'sigmoid2'.
    order_free: average both orders.
  """

  def __init__(
    self,
    d_in: int,
    hidden: Sequence[int] = (512,),
    output: str = 'linear',
    *,
    order_free: bool = True,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs,
  ):
    hidden = check_hidden(hidden)
    check_output(output)
    self.d_in, self.hidden, self.output = d_in, hidden, output
    self.order_free, self.dtype = bool(order_free), dtype
    widths = (2 * d_in, *hidden, 1)
    self.layers = nnx.List(
      [
        nnx.Linear(a, b, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        for a, b in zip(widths[:-1], widths[1:])
      ]
    )

  def embed(self, x: jax.Array) -> jax.Array:
    """Identity (in the compute dtype): the layers see the pair."""
    return x.astype(self.dtype)

  def _f(self, ha: jax.Array, hb: jax.Array) -> jax.Array:
    h = jnp.concatenate([ha, hb], axis=-1)
    for layer in self.layers[:-1]:
      h = nnx.relu(layer(h))
    return self.layers[-1](h)

  def pair_head(self, ha: jax.Array, hb: jax.Array) -> jax.Array:
    """[P, d], [P, d] -> [P] f32 (order-free: symmetric in ha, hb)."""
    y = self._f(ha, hb)
    if self.order_free:
      y = 0.5 * (y + self._f(hb, ha))
    return apply_output(y, self.output)

  def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
    return self.pair_head(self.embed(a), self.embed(b))
