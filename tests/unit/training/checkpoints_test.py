"""Orbax checkpoints: round trip, keep-last-N plus best, tmp leftovers."""

import compiled
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdmjax.errors import InputError
from rdmjax.training import checkpoints as checkpoint

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


def test_saving_a_replicated_state_compiles_nothing(tmp_path):
  """Each replicated array is written whole from one replica: orbax's
  replica-parallel default sliced it over the 8 devices, an eager slice
  (one compile) per leaf shape."""
  mesh = jax.make_mesh((8,), ('data',))
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = jax.device_put(
    {'w': jnp.ones((64, 24)), 'b': jnp.ones(24), 'v': jnp.ones((8, 3))}, rep
  )
  with compiled.programs() as made:
    m = checkpoint.manager(tmp_path / 'ckpt', every=1, keep=2)
    checkpoint.save(m, 1, state, META)
    m.wait_until_finished()
  assert not made, made
  abstract = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), state
  )
  got, _ = checkpoint.restore(m, 1, abstract, META)
  for k in state:
    np.testing.assert_array_equal(got[k], state[k])
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


def _three_steps(d):
  m = checkpoint.manager(d, every=1, keep=5)
  for s in (1, 2, 3):
    checkpoint.save(m, s, _state(float(s)), META, val_spearman=0.1 * s)
  m.wait_until_finished()
  m.close()


def _damage(step_dir, how):
  """What a power loss, or a kill during Orbax's deletion of a step, leaves."""
  import shutil

  if how == 'emptied':
    shutil.rmtree(step_dir)
    step_dir.mkdir()
  elif how == 'state_gone':
    shutil.rmtree(step_dir / 'state')
  elif how == 'truncated':
    for p in (step_dir / 'state').rglob('*'):
      if p.is_file():
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.mark.parametrize('how', ['emptied', 'state_gone', 'truncated'])
def test_unreadable_latest_falls_back_to_previous(tmp_path, how):
  d = tmp_path / 'ckpt'
  _three_steps(d)
  _damage(d / '3', how)
  m = checkpoint.manager(d, every=1, keep=5)
  assert m.latest_step() == 3  # Orbax lists the damaged folder as a step
  with pytest.raises(checkpoint.UnreadableCheckpointError, match='3'):
    checkpoint.restore(m, 3, _abstract(), META)
  state, meta, step = checkpoint.restore_newest(m, _abstract(), META)
  assert step == 2 and meta['step'] == 2
  np.testing.assert_array_equal(state['w'], np.full((3, 2), 2.0))
  # The damaged step is gone, so the resumed run can save step 3 again.
  assert m.all_steps() == [1, 2] and not (d / '3').exists()
  checkpoint.save(m, 3, _state(3.5), META)
  m.wait_until_finished()
  state, _ = checkpoint.restore(m, 3, _abstract(), META)
  assert float(state['w'][0, 0]) == 3.5
  m.close()


def test_read_only_fallback_keeps_the_damaged_step(tmp_path):
  d = tmp_path / 'ckpt'
  _three_steps(d)
  _damage(d / '3', 'state_gone')
  m = checkpoint.manager(d, every=1, keep=5, read_only=True)
  _, _, step = checkpoint.restore_newest(m, _abstract(), META, [3, 1])
  assert step == 1 and (d / '3').is_dir()
  m.close()


def test_no_readable_step_raises_and_deletes_nothing(tmp_path):
  d = tmp_path / 'ckpt'
  _three_steps(d)
  for s in (1, 2, 3):
    _damage(d / str(s), 'state_gone')
  m = checkpoint.manager(d, every=1, keep=5)
  with pytest.raises(checkpoint.UnreadableCheckpointError, match='ckpt/3'):
    checkpoint.restore_newest(m, _abstract(), META)
  assert m.all_steps() == [1, 2, 3]
  m.close()
  m = checkpoint.manager(tmp_path / 'empty', every=1, keep=5)
  assert checkpoint.restore_newest(m, _abstract(), META) is None
  m.close()


def test_other_model_does_not_fall_back(tmp_path):
  d = tmp_path / 'ckpt'
  _three_steps(d)
  m = checkpoint.manager(d, every=1, keep=5)
  other = dict(META, model={'name': 'mlp', 'hidden': [16]})
  with pytest.raises(InputError, match='hidden') as e:
    checkpoint.restore_newest(m, _abstract(), other)
  assert not isinstance(e.value, checkpoint.UnreadableCheckpointError)
  assert m.all_steps() == [1, 2, 3]
  m.close()


def test_pick_step_by_number(tmp_path):
  d = tmp_path / 'ckpt'
  _three_steps(d)
  m = checkpoint.manager(d, every=1, keep=5, read_only=True)
  assert checkpoint.pick_step(m, '2') == 2
  assert checkpoint.pick_step(m, 1) == 1
  assert checkpoint.pick_step(m, 'best') == 3
  with pytest.raises(InputError, match=r'step 7 .*\[1, 2, 3\]'):
    checkpoint.pick_step(m, '7')
  with pytest.raises(InputError, match='newest'):
    checkpoint.pick_step(m, 'newest')
  m.close()


def test_orbax_info_logs_hidden_ours_kept(tmp_path, caplog):
  import logging as std_logging

  from absl import logging

  caplog.set_level(std_logging.INFO)
  m = checkpoint.manager(tmp_path / 'ckpt', every=1, keep=2)
  checkpoint.save(m, 1, _state(1.0), META)
  m.wait_until_finished()
  m.close()
  logging.info('rdmjax line')
  orbax_info = [
    r
    for r in caplog.records
    if '/orbax/' in r.pathname and r.levelno < std_logging.WARNING
  ]
  assert not orbax_info, orbax_info[0].getMessage()
  assert 'rdmjax line' in caplog.messages


@pytest.mark.parametrize('nan_step', [1, 2, 3])
def test_nan_val_spearman_is_never_best(tmp_path, nan_step):
  m = checkpoint.manager(tmp_path / 'ckpt', every=1, keep=1)
  val = {1: 0.1, 2: 0.3, 3: 0.2}
  val[nan_step] = float('nan')
  for s in (1, 2, 3):
    checkpoint.save(m, s, _state(s), META, val_spearman=val[s])
  m.wait_until_finished()
  best = max((s for s in val if not np.isnan(val[s])), key=val.get)
  assert checkpoint.pick_step(m, 'best') == best
  assert m.all_steps() == sorted({best, 3})
  m.close()


def test_incompatible_checkpoint_names_every_field_and_the_folder():
  ck = checkpoint
  meta = {'split_seed': 0, 'leaked': False, 'subject': 'subj01'}
  want = {'split_seed': 1, 'leaked': True, 'subject': 'subj01'}
  with pytest.raises(InputError) as e:
    ck.check_compatible(meta, want, '/w/ckpt/40')
  msg = str(e.value)
  assert 'split_seed=0 (this run: 1)' in msg and 'leaked=False' in msg
  assert 'subject' not in msg.split('written for')[1].split(':')[0]
  assert '--config.resume=overwrite to remove /w/ckpt ' in msg
