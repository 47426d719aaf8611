"""Training losses over a batch of pairs, chosen by `config.train.loss`.

`pred`, `target`: [P] predicted and measured dissimilarities of a batch's
pairs; `mask`: [P], 1 = count the pair (0: padding, other splits' pairs of
the leaked variant). Every loss here is jit-able with static shapes and no
host callbacks, and works on pairs sharded over the mesh `data` axis (its
sums, sorts and gathers are global jnp ops; XLA adds the collectives).

- 'mse': mean squared error (`rdmjax.training.metrics.mse`).
- 'pearson_mse': alpha * (1 - r) + (1 - alpha) * MSE, alpha =
  `train.alpha` (the reference study's loss).
- 'soft_spearman': 1 - Pearson(soft_rank(pred), rank(target)), a
  differentiable 1 - Spearman rho (`soft_spearman`).
- 'pairwise_rank': RankNet's logistic loss over pairs of pairs, mean
  softplus(-sign(t_a - t_b) * (p_a - p_b) / tau) (`pairwise_rank`).

The rank losses read `train.rank_pairs` (default 1024, `RANK_PAIRS`: the
most reference pairs or comparisons per step) and `train.rank_temperature`
(tau = rank_temperature * std(pred); absent or 0: the loss's own default,
`RANK_TEMPERATURE`: 0.1 for soft_spearman, whose soft ranks should be
close to ranks, and 1.0 for pairwise_rank, RankNet's unit scale: on the
tiny synthetic subject 0.1 there trained worse, test Spearman 0.26 against
0.35 at 1.0, mean of 4 seeds, while soft_spearman was flat from 0.1 to 3).
Both depend on the predictions only through their order at scale tau, so
they are invariant to a shift or positive rescaling of the predictions:
they fix no offset or scale, and a model trained on them predicts rank,
not dissimilarity (its R^2 is meaningless; Spearman is the score).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rdmjax.errors import InputError
from rdmjax.rsa.compare import avg_ranks
from rdmjax.training import metrics

__all__ = [
  'LOSSES',
  'RANK_PAIRS',
  'RANK_TEMPERATURE',
  'LossFn',
  'get',
  'pairwise_rank',
  'soft_rank',
  'soft_spearman',
]

LOSSES = ('mse', 'pearson_mse', 'soft_spearman', 'pairwise_rank')
RANK_PAIRS = 1024
RANK_TEMPERATURE = {'soft_spearman': 0.1, 'pairwise_rank': 1.0}

# (pred, target, mask, key) -> scalar f32. The key (a typed PRNG key, fresh
# each step) draws the rank losses' comparisons; the others ignore it.
LossFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]

_TINY = 1e-12


def pearson_mse(
  pred: jax.Array,
  target: jax.Array,
  mask: jax.Array | None = None,
  alpha: float = 0.5,
) -> jax.Array:
  """The reference study's loss: alpha * (1 - r) + (1 - alpha) * MSE."""
  return alpha * (1.0 - metrics.pearson(pred, target, mask)) + (
    1.0 - alpha
  ) * metrics.mse(pred, target, mask)


def _safe_sqrt(v: jax.Array) -> jax.Array:
  """sqrt with a finite gradient at 0 (where it is taken as 0)."""
  pos = v > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


def _std(x: jax.Array, w: jax.Array) -> jax.Array:
  """Weighted standard deviation (differentiable, 0 when constant)."""
  n = jnp.maximum(jnp.sum(w), 1.0)
  mean = jnp.sum(w * x) / n
  return _safe_sqrt(jnp.sum(w * jnp.square(x - mean)) / n)


def _pearson(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
  """Weighted Pearson r with a finite gradient: 0 when either is constant.

  Unlike `rdmjax.rsa.compare.pearson` (a score: NaN on constant input), a loss
  must not turn a step's parameters into NaN.
  """
  n = jnp.maximum(jnp.sum(w), 1.0)
  a = w * (a - jnp.sum(w * a) / n)
  b = w * (b - jnp.sum(w * b) / n)
  sa, sb = _safe_sqrt(jnp.sum(a * a)), _safe_sqrt(jnp.sum(b * b))
  ok = (sa > 0) & (sb > 0)
  den = jnp.where(ok, sa * sb, 1.0)
  return jnp.where(ok, jnp.sum(a * b) / den, 0.0)


def _tau(pred: jax.Array, w: jax.Array, temperature: float) -> jax.Array:
  """tau = temperature * std(pred), floored so that it is never 0."""
  return temperature * _std(pred, w) + _TINY


def soft_rank(
  x: jax.Array,
  tau: jax.Array | float,
  ref: jax.Array | None = None,
  ref_weights: jax.Array | None = None,
) -> jax.Array:
  """Differentiable ranks: the sigmoid pairwise approximation.

  soft_rank(x)_i = 0.5 + sum_j w_j * sigmoid((x_i - ref_j) / tau): each
  reference value below x_i counts ~1, above ~0, equal 1/2. With ref = x
  (the default) and tau -> 0 this is scipy's `rankdata` (1-based, ties
  averaged); for tau > 0 it is smooth in x, with gradients to every x_i
  and ref_j within ~tau of each other. With a subset of the values as ref,
  it is x_i's rank among them (times their count, up to 0.5): the rank of
  x_i in the whole set estimated from a sample.

  Chosen over the exact projection of Blondel et al. (2020, fast soft sort:
  isotonic regression by pool-adjacent-violators) because PAV is a
  sequential loop of data-dependent length, slow under jit on an
  accelerator and awkward with sharded inputs, while this is one
  elementwise [n, k] map and a sum, with static shapes. Its cost is
  O(n * k): pass a sample of at most a few thousand values as ref for
  large n.

  Args:
    x: [n] values to rank.
    tau: the temperature (same units as x), > 0.
    ref: [k] reference values (default x itself).
    ref_weights: [k] weights of the reference values (default 1; 0 drops
      one, e.g. a masked pair).

  Returns:
    [n] f32 soft ranks.
  """
  x = jnp.asarray(x, jnp.float32)
  ref = x if ref is None else jnp.asarray(ref, jnp.float32)
  s = jax.nn.sigmoid((x[:, None] - ref[None, :]) / tau)
  if ref_weights is not None:
    s = s * jnp.asarray(ref_weights, jnp.float32)[None, :]
  return 0.5 + jnp.sum(s, axis=1)


def soft_spearman(
  pred: jax.Array,
  target: jax.Array,
  mask: jax.Array | None = None,
  key: jax.Array | None = None,
  *,
  temperature: float = RANK_TEMPERATURE['soft_spearman'],
  max_pairs: int = RANK_PAIRS,
) -> jax.Array:
  """1 - Pearson(soft_rank(pred), rank(target)): a differentiable 1 - rho.

  Every masked pair's prediction is soft-ranked (`soft_rank`) among k =
  min(max_pairs, P) reference predictions, a random subset of the batch
  drawn with `key` (all of them, in order, when P <= max_pairs: then the
  loss tends to 1 - scipy's Spearman rho as temperature -> 0). So the cost
  is an [P, k] map, not [P, P] (32640^2 for a block of 256 images), and
  every pair gets a gradient. The targets' ranks are exact (average ranks
  of ties, over the masked pairs); tau = temperature * std(pred).

  Args:
    pred, target: [P] predicted and measured dissimilarities.
    mask: [P] 1 = count the pair (default all).
    key: a PRNG key for the reference subset (needed when P > max_pairs).
    temperature: tau relative to the predictions' standard deviation.
    max_pairs: the most reference pairs.

  Returns:
    Scalar f32 in [0, 2]; 1 for constant predictions (zero gradient then).
  """
  pred = jnp.asarray(pred, jnp.float32)
  w = metrics.weights(pred, mask)
  p = pred.shape[0]
  if p > max_pairs:
    if key is None:
      raise ValueError(f'{p} pairs > max_pairs={max_pairs}: pass a key')
    idx = jax.random.choice(key, p, (max_pairs,), replace=False)
    ref, ref_w = pred[idx], w[idx]
  else:
    ref, ref_w = pred, w
  soft = soft_rank(pred, _tau(pred, w, temperature), ref, ref_w)
  ranks = jax.lax.stop_gradient(avg_ranks(target, w))
  return 1.0 - _pearson(soft, ranks, w)


def _comparisons(
  p: int, k: int, key: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
  """Indices (a, b), a != b, of k comparisons of P pairs: every unordered
  one when P(P-1)/2 <= k, else k drawn uniformly (with replacement)."""
  if p * (p - 1) // 2 <= k:
    a, b = np.triu_indices(p, 1)
    return jnp.asarray(a, jnp.int32), jnp.asarray(b, jnp.int32)
  if key is None:
    raise ValueError(f'{p} pairs have > max_pairs={k} comparisons: pass a key')
  ka, kb = jax.random.split(key)
  a = jax.random.randint(ka, (k,), 0, p)
  b = (a + jax.random.randint(kb, (k,), 1, p)) % p
  return a, b


def pairwise_rank(
  pred: jax.Array,
  target: jax.Array,
  mask: jax.Array | None = None,
  key: jax.Array | None = None,
  *,
  temperature: float = RANK_TEMPERATURE['pairwise_rank'],
  max_pairs: int = RANK_PAIRS,
) -> jax.Array:
  """RankNet's logistic loss over comparisons of two pairs of the batch.

  For comparisons (a, b) of two pairs: mean over those with t_a != t_b
  (and both masked in) of softplus(-sign(t_a - t_b) * (p_a - p_b) / tau),
  tau = temperature * std(pred): log 2 for a tie in prediction, -> 0 when
  ordered as the targets with a margin of several tau. The comparisons are
  every unordered one when P(P-1)/2 <= max_pairs, else max_pairs drawn
  uniformly with `key` (a != b).

  Args:
    pred, target: [P] predicted and measured dissimilarities.
    mask: [P] 1 = count the pair (default all).
    key: a PRNG key for the comparisons (needed when they are sampled).
    temperature: tau relative to the predictions' standard deviation.
    max_pairs: the most comparisons.

  Returns:
    Scalar f32 >= 0 (0 when no comparison counts).
  """
  pred = jnp.asarray(pred, jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  w = metrics.weights(pred, mask)
  a, b = _comparisons(pred.shape[0], max_pairs, key)
  sign = jnp.sign(target[a] - target[b])
  cw = w[a] * w[b] * jnp.abs(sign)
  z = (pred[a] - pred[b]) / _tau(pred, w, temperature)
  total = jnp.sum(cw * jax.nn.softplus(-sign * z))
  return total / jnp.maximum(jnp.sum(cw), 1.0)


def _rank_settings(tc, name: str) -> tuple[float, int]:
  """(temperature, max_pairs) of rank loss `name` from config.train."""
  temperature = float(tc.get('rank_temperature', 0.0))
  max_pairs = tc.get('rank_pairs', RANK_PAIRS)
  if not (temperature >= 0 and np.isfinite(temperature)):
    raise InputError(
      f'train.rank_temperature={temperature!r} must be > 0 (tau = '
      f'rank_temperature * std(pred)), or 0 for the default '
      f'({RANK_TEMPERATURE[name]} for {name})'
    )
  temperature = temperature or RANK_TEMPERATURE[name]
  if isinstance(max_pairs, bool) or not float(max_pairs).is_integer():
    raise InputError(f'train.rank_pairs={max_pairs!r} must be an integer')
  if int(max_pairs) < 2:
    raise InputError(f'train.rank_pairs={max_pairs!r} must be >= 2')
  return temperature, int(max_pairs)


def get(config) -> LossFn:
  """The loss `config.train.loss` names: fn(pred, target, mask, key).

  Raises:
    InputError: an unknown name, or a bad rank_temperature / rank_pairs.
  """
  tc = config.train
  name = tc.loss
  if name == 'mse':
    return lambda p, t, m, key=None: metrics.mse(p, t, m)
  if name == 'pearson_mse':
    alpha = float(tc.alpha)
    return lambda p, t, m, key=None: pearson_mse(p, t, m, alpha)
  if name in ('soft_spearman', 'pairwise_rank'):
    temperature, max_pairs = _rank_settings(tc, name)
    fn = soft_spearman if name == 'soft_spearman' else pairwise_rank

    def loss(p, t, m, key=None):
      return fn(p, t, m, key, temperature=temperature, max_pairs=max_pairs)

    return loss
  raise InputError(
    f'train.loss={name!r} unknown; use one of {", ".join(LOSSES)}'
  )
