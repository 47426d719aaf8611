"""Pairs: image-disjoint splits, on-device batches, targets, eval tiles."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from rdmjax.errors import InputError
from rdmjax.training import pairs

N, V = 150, 64


def _cfg(**kw):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.pairs = ml_collections.ConfigDict(
    dict(
      fractions=(0.8, 0.1, 0.1),
      sampler='block',
      block_size=16,
      num_pairs=120,
      metric='correlation',
      leaked=False,
      eval_tile=8,
      precision='float32',
    )
  )
  c.pairs.update(kw)
  return c


@pytest.fixture(scope='module')
def z():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(N, V)) + rng.normal(size=(N, 1)) * 0.3
  return (x - x.mean(0)) / x.std(0)


def _batches(cfg, z, split_idx, steps, **kw):
  """make_batch for steps 0..steps-1, jitted and vmapped over the step."""
  fn = functools.partial(pairs.make_batch, cfg=cfg, **kw)
  data = {'z': jnp.asarray(z, jnp.float32)}
  many = jax.jit(jax.vmap(lambda s: fn(jax.random.key(7), s, data, split_idx)))
  return jax.tree.map(np.asarray, many(jnp.arange(steps)))


def test_split_images_disjoint_sorted_cover():
  s = pairs.split_images(101, (0.8, 0.1, 0.1), seed=3)
  assert [len(s[k]) for k in pairs.SPLITS] == [81, 10, 10]
  for v in s.values():
    assert v.dtype == np.int32 and np.all(np.diff(v) > 0)
  np.testing.assert_array_equal(
    np.sort(np.concatenate(list(s.values()))), np.arange(101)
  )
  again = pairs.split_images(101, (0.8, 0.1, 0.1), seed=3)
  other = pairs.split_images(101, (0.8, 0.1, 0.1), seed=4)
  np.testing.assert_array_equal(s['test'], again['test'])
  assert not np.array_equal(s['test'], other['test'])


@pytest.mark.parametrize('n,fr', [(10, (0.8, 0.1, 0.1)), (20, (0.5, 0.5))])
def test_split_images_bad_input(n, fr):
  with pytest.raises(InputError):
    pairs.split_images(n, fr)


@pytest.mark.parametrize('sampler', ['block', 'uniform'])
def test_train_pairs_never_touch_heldout_images(z, sampler):
  s = pairs.split_images(N, seed=0)
  b = _batches(_cfg(sampler=sampler), z, s['train'], 200)
  seen = np.union1d(b['i'].ravel(), b['j'].ravel())
  assert np.all(np.isin(seen, s['train']))
  assert not np.intersect1d(seen, np.concatenate([s['val'], s['test']])).size
  assert np.all(b['i'] != b['j'])
  assert np.all(b['mask'] == 1)
  # Steps differ; 200 steps of a 120-image split reach most images.
  assert not np.array_equal(b['i'][0], b['i'][1])
  assert len(seen) > 0.9 * len(s['train'])


def test_block_is_without_replacement_and_pairs_match(z):
  s = pairs.split_images(N, seed=0)
  b = _batches(_cfg(), z, s['train'], 20)
  for t in range(20):
    assert len(np.unique(b['block'][t])) == 16
    np.testing.assert_array_equal(b['block'][t][b['bi'][t]], b['i'][t])
    np.testing.assert_array_equal(b['block'][t][b['bj'][t]], b['j'][t])
  assert b['i'].shape == (20, 16 * 15 // 2)


@pytest.mark.parametrize('sampler', ['block', 'uniform'])
def test_same_key_same_pairs(z, sampler):
  s = pairs.split_images(N, seed=0)
  cfg = _cfg(sampler=sampler)
  data = {'z': jnp.asarray(z, jnp.float32)}
  f = jax.jit(functools.partial(pairs.make_batch, cfg=cfg))
  a = f(jax.random.key(0), 5, data, s['train'])
  b = f(jax.random.key(0), 5, data, s['train'])
  c = f(jax.random.key(0), 6, data, s['train'])
  np.testing.assert_array_equal(a['i'], b['i'])
  np.testing.assert_array_equal(a['j'], b['j'])
  assert not np.array_equal(a['i'], c['i'])


def _ref_targets(z, metric):
  if metric == 'correlation':
    return 1.0 - np.corrcoef(z)
  return cdist(z, z)


@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
def test_block_and_pair_targets_match_numpy(z, metric):
  ref = _ref_targets(z, metric)
  rows = np.arange(0, N, 3)
  got = np.asarray(
    pairs.block_targets(jnp.asarray(z[rows], jnp.float32), metric)
  )
  ii, jj = pairs.block_pairs(len(rows))
  want = ref[np.ix_(rows, rows)]
  np.testing.assert_allclose(got[ii, jj], want[ii, jj], rtol=1e-5)
  i, j = pairs.sample_uniform(jax.random.key(1), jnp.arange(N), 500)
  pt = pairs.pair_targets(jnp.asarray(z, jnp.float32), i, j, metric)
  np.testing.assert_allclose(pt, ref[np.asarray(i), np.asarray(j)], rtol=1e-5)


@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
def test_bf16_targets_close(z, metric):
  ref = _ref_targets(z[:32], metric)
  got = pairs.block_targets(jnp.asarray(z[:32], jnp.float32), metric, 'bf16')
  ii, jj = pairs.block_pairs(32)
  np.testing.assert_allclose(np.asarray(got)[ii, jj], ref[ii, jj], rtol=2e-2)


def test_batch_targets_are_the_pairs_targets(z):
  s = pairs.split_images(N, seed=0)
  ref = _ref_targets(z, 'euclidean')
  for sampler in ('block', 'uniform'):
    b = _batches(_cfg(sampler=sampler, metric='euclidean'), z, s['train'], 3)
    np.testing.assert_allclose(b['target'], ref[b['i'], b['j']], rtol=1e-5)


def test_sample_block_too_small_split():
  with pytest.raises(InputError, match='block_size'):
    pairs.sample_block(jax.random.key(0), jnp.arange(10), 16)


def test_uniform_pairs_on_two_images():
  i, j = pairs.sample_uniform(jax.random.key(0), jnp.array([3, 9]), 100)
  assert np.all(np.asarray(i) != np.asarray(j))
  assert set(np.asarray(i)) | set(np.asarray(j)) == {3, 9}


def test_leaked_split_trains_on_test_images_but_not_test_pairs(z):
  n = 60
  s = pairs.leaked_split(n, (0.8, 0.1, 0.1))
  assert all(np.array_equal(v, np.arange(n)) for v in s.values())
  cfg = _cfg(leaked=True)
  b = _batches(cfg, z[:n], s['train'], 100)
  k = b['mask'] > 0
  train = {(min(a, c), max(a, c)) for a, c in zip(b['i'][k], b['j'][k])}
  # Only ~80% of the sampled pairs are train pairs.
  assert 0.7 < k.mean() < 0.9
  # The test pairs as evaluation scores them: every pair of the test
  # split's images that pair_split_id assigns to the test split.
  i, j = np.triu_indices(n, 1)
  sid = np.asarray(pairs.pair_split_id(i, j, cfg.pairs.fractions, cfg.seed))
  k = sid == pairs.SPLIT_ID['test']
  test = {(int(a), int(c)) for a, c in zip(i[k], j[k])}
  assert 0.05 < len(test) / (n * (n - 1) / 2) < 0.15
  assert not train & test
  # The leak: every test pair's images do occur in training pairs.
  test_images = {a for p in test for a in p}
  assert test_images <= {a for p in train for a in p}


def test_pair_split_id_symmetric():
  i = jnp.arange(1000) % 37
  j = jnp.arange(1000) // 37
  np.testing.assert_array_equal(
    pairs.pair_split_id(i, j), pairs.pair_split_id(j, i)
  )
  ids = np.asarray(pairs.pair_split_id(i, j, (0.5, 0.25, 0.25), seed=1))
  assert set(ids) == {0, 1, 2}


@pytest.mark.parametrize(
  'sampler,block', [('block', 16), ('uniform', 16), ('block', 17)]
)
def test_batches_born_sharded(z, sampler, block):
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ('data',))
  cfg = _cfg(sampler=sampler, block_size=block, num_pairs=128)
  s = pairs.split_images(N, seed=0)
  shard = pairs.batch_sharding(mesh, cfg)
  f = jax.jit(
    functools.partial(pairs.make_batch, cfg=cfg),
    out_shardings=shard,
  )
  data = {'z': jnp.asarray(z, jnp.float32)}
  for step in range(2):
    b = f(jax.random.key(0), step, data, s['train'])
    for k, v in b.items():
      assert v.sharding == shard[k], k
  n = block * (block - 1) // 2 if sampler == 'block' else 128
  assert b['i'].shape[0] == pairs.batch_size(cfg)
  assert b['i'].shape[0] % 8 == 0
  assert float(b['mask'].sum()) == n
  assert np.all(np.asarray(b['i']) != np.asarray(b['j']))
