"""Models: exact symmetry, shapes, outputs, the embed path, jit via split."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from rdmjax.errors import InputError
from rdmjax.models import SiameseCNN, SymmetricMLP, build_model
from rdmjax.training import pairs

D, P_ = 24, 40


def _xy(seed=0, n=P_, d=D):
  rng = np.random.default_rng(seed)
  return (
    jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
    jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
  )


@pytest.mark.parametrize('hidden', [(), (16,), (16, 8), (16, 8, 4)])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_mlp_exactly_symmetric(hidden, dtype):
  m = SymmetricMLP(D, hidden, dtype=dtype, rngs=nnx.Rngs(0))
  a, b = _xy()
  ab, ba = m(a, b), m(b, a)
  chex.assert_shape(ab, (P_,))
  assert ab.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(ab), np.asarray(ba))
  # Not symmetric by being constant: different pairs, different outputs.
  assert np.std(np.asarray(ab)) > 0


def test_mlp_zero_hidden_is_linear_in_features():
  m = SymmetricMLP(D, (), rngs=nnx.Rngs(0))
  a, b = _xy()
  feats = np.concatenate(
    [np.asarray(a + b), np.abs(np.asarray(a - b)), np.asarray(a * b)], -1
  )
  w = np.asarray(m.out.kernel[...])
  want = feats.astype(np.float64) @ w.astype(np.float64) + np.asarray(
    m.out.bias[...]
  )
  np.testing.assert_allclose(m(a, b), want[:, 0], rtol=1e-4, atol=1e-5)


def test_mlp_rejects_four_hidden_layers():
  with pytest.raises(InputError, match='hidden'):
    SymmetricMLP(D, (4, 4, 4, 4), rngs=nnx.Rngs(0))
  with pytest.raises(InputError, match='output'):
    SymmetricMLP(D, (4,), output='tanh', rngs=nnx.Rngs(0))


def test_sigmoid2_range():
  m = SymmetricMLP(D, (16,), output='sigmoid2', rngs=nnx.Rngs(0))
  a, b = _xy()
  y = np.asarray(m(10 * a, b))
  assert np.all((y > 0) & (y < 2))
  assert y.std() > 0


def test_block_embed_path_equals_call():
  m = SymmetricMLP(D, (16, 8), rngs=nnx.Rngs(0))
  x, _ = _xy(n=12)
  ii, jj = pairs.block_pairs(12)
  h = m.embed(x)
  chex.assert_shape(h, (12, 16))
  via_block = m.pair_head(h[ii], h[jj])
  direct = m(x[ii], x[jj])
  chex.assert_shape(via_block, (66,))
  np.testing.assert_allclose(via_block, direct, rtol=1e-5, atol=1e-6)


def test_jit_pure_function_of_state():
  m = SymmetricMLP(D, (16,), rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(m)

  @jax.jit
  def fwd(state, a, b):
    return nnx.merge(graphdef, state)(a, b)

  a, b = _xy()
  np.testing.assert_allclose(fwd(state, a, b), m(a, b), rtol=1e-6)
  grads = jax.grad(lambda s: jnp.sum(fwd(s, a, b) ** 2))(state)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def _images(n, size=16, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(size=(n, size, size)), jnp.float32)


@pytest.mark.parametrize('output', ['linear', 'sigmoid2'])
def test_siamese_cnn_shapes_symmetry_output(output):
  m = SiameseCNN((4, 8), 16, output, embed_dim=12, rngs=nnx.Rngs(0))
  xa, xb = _images(6), _images(6, seed=1)
  chex.assert_shape(m.embed(xa), (6, 12))
  chex.assert_shape(m.embed(xa[..., None]), (6, 12))
  ab, ba = m(xa, xb), m(xb, xa)
  chex.assert_shape(ab, (6,))
  np.testing.assert_array_equal(np.asarray(ab), np.asarray(ba))
  if output == 'sigmoid2':
    assert np.all((np.asarray(ab) > 0) & (np.asarray(ab) < 2))


def test_siamese_cnn_bad_image_size():
  m = SiameseCNN((4, 8), 16, rngs=nnx.Rngs(0))
  with pytest.raises(InputError, match='image_size'):
    m.embed(_images(2, size=32))


def test_siamese_cnn_conv_matches_numpy():
  m = SiameseCNN((2, 3), 8, embed_dim=4, rngs=nnx.Rngs(0))
  x = np.asarray(_images(1, size=8))[0]
  k = np.asarray(m.conv1.kernel[...])  # [3, 3, 1, c]
  pad = np.pad(x, 1)
  ref = np.zeros((8, 8, 2))
  for r in range(8):
    for c in range(8):
      ref[r, c] = np.einsum('ab,abc->c', pad[r : r + 3, c : c + 3], k[:, :, 0])
  ref = np.maximum(ref + np.asarray(m.conv1.bias[...]), 0)
  ref = ref.reshape(4, 2, 4, 2, 2).max(axis=(1, 3))
  got = nnx.max_pool(
    nnx.relu(m.conv1(jnp.asarray(x)[None, ..., None])), (2, 2), strides=(2, 2)
  )
  np.testing.assert_allclose(got[0], ref, rtol=1e-5, atol=1e-6)


def _model_cfg(**kw):
  c = ml_collections.ConfigDict(
    dict(
      name='mlp',
      hidden=(8,),
      output='linear',
      channels=(2, 4),
      image_size=16,
      dtype='float32',
    )
  )
  c.update(kw)
  return c


def test_build_model_dispatch():
  m = build_model(_model_cfg(), D, rngs=nnx.Rngs(0))
  assert isinstance(m, SymmetricMLP) and m.hidden == (8,)
  full = ml_collections.ConfigDict({'model': _model_cfg(dtype='bfloat16')})
  m = build_model(full, D, rngs=nnx.Rngs(0))
  assert m.dtype == jnp.bfloat16
  m = build_model(_model_cfg(name='siamese_cnn'), D, rngs=nnx.Rngs(0))
  assert isinstance(m, SiameseCNN)
  chex.assert_shape(m(_images(3), _images(3, seed=2)), (3,))
  with pytest.raises(InputError, match='model.name'):
    build_model(_model_cfg(name='resnet'), D, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('hidden', [(), (16, 8)])
def test_concat_mlp_is_the_studys_model_made_order_free(hidden):
  """0 hidden layers: a linear map of [a, b] (numpy, float64); order-free:
  the mean of both orders, bitwise symmetric; order_free=False: [a, b] as
  the study ran it, not symmetric."""
  from rdmjax.models import ConcatMLP

  a, b = _xy()
  plain = ConcatMLP(D, hidden, order_free=False, rngs=nnx.Rngs(0))
  free = ConcatMLP(D, hidden, order_free=True, rngs=nnx.Rngs(0))
  ab, ba = np.asarray(plain(a, b)), np.asarray(plain(b, a))
  assert np.abs(ab - ba).max() > 1e-3
  np.testing.assert_array_equal(free(a, b), free(b, a))
  np.testing.assert_allclose(free(a, b), (ab + ba) / 2, rtol=1e-5, atol=1e-6)
  if not hidden:
    w = np.asarray(plain.layers[0].kernel[...], np.float64)
    bias = np.asarray(plain.layers[0].bias[...], np.float64)
    x = np.concatenate([np.asarray(a), np.asarray(b)], -1).astype(np.float64)
    np.testing.assert_allclose(ab, (x @ w + bias)[:, 0], rtol=1e-4, atol=1e-5)
