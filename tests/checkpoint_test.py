"""Orbax checkpoints: round trip, keep-last-N plus best, tmp leftovers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdmjax import checkpoint
from rdmjax.errors import InputError

META = dict(model={'name': 'mlp', 'hidden': [8]}, d_in=4, roi='all')


def _state(v):
  return {'w': jnp.full((3, 2), v, jnp.float32), 'step': jnp.int32(v)}


def _abstract():
  return jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _state(0)
  )


def test_round_trip_and_meta(tmp_path):
  m = checkpoint.manager(tmp_path / 'ckpt', every=1, keep=2)
  checkpoint.save(m, 1, _state(1.5), META, val_spearman=0.3)
  m.wait_until_finished()
  state, meta = checkpoint.restore(m, 1, _abstract(), META)
  np.testing.assert_array_equal(state['w'], np.full((3, 2), 1.5))
  assert meta['val_spearman'] == 0.3 and meta['step'] == 1
  m.close()


def test_keeps_last_n_and_best(tmp_path):
  m = checkpoint.manager(tmp_path / 'ckpt', every=2, keep=2)
  val = {2: 0.5, 4: 0.9, 6: 0.3, 8: 0.4, 10: 0.2}
  for s in range(1, 11):
    checkpoint.save(m, s, _state(s), META, val_spearman=val.get(s))
  m.wait_until_finished()
  assert m.all_steps() == [4, 8, 10]  # every 2nd; last 2 plus the best
  assert checkpoint.pick_step(m, 'best') == 4
  assert checkpoint.pick_step(m, 'latest') == 10
  m.close()


def test_other_model_is_an_input_error(tmp_path):
  m = checkpoint.manager(tmp_path / 'ckpt', every=1, keep=1)
  checkpoint.save(m, 1, _state(1.0), META)
  m.wait_until_finished()
  other = dict(META, model={'name': 'mlp', 'hidden': [16]})
  with pytest.raises(InputError, match='hidden'):
    checkpoint.restore(m, 1, _abstract(), other)
  wrong_shape = {'w': jax.ShapeDtypeStruct((5, 2), jnp.float32)}
  wrong_shape['step'] = jax.ShapeDtypeStruct((), jnp.int32)
  with pytest.raises(InputError, match='does not fit'):
    checkpoint.restore(m, 1, wrong_shape, META)
  m.close()


def test_unfinished_save_is_ignored_and_cleaned(tmp_path):
  d = tmp_path / 'ckpt'
  m = checkpoint.manager(d, every=1, keep=2)
  checkpoint.save(m, 1, _state(1.0), META)
  m.wait_until_finished()
  m.close()
  # What a kill -9 during the save of step 2 leaves behind.
  tmp = d / '2.orbax-checkpoint-tmp-1700000000000'
  (tmp / 'state').mkdir(parents=True)
  (tmp / 'state' / 'garbage').write_bytes(b'\0' * 10)
  m = checkpoint.manager(d, every=1, keep=2)
  assert not tmp.exists()
  assert m.latest_step() == 1
  state, _ = checkpoint.restore(m, 1, _abstract(), META)
  assert float(state['w'][0, 0]) == 1.0
  checkpoint.save(m, 2, _state(2.0), META)
  m.wait_until_finished()
  assert m.all_steps() == [1, 2]
  m.close()
