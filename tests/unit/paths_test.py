"""Run outputs go through etils epath (the path layer Orbax uses), so a
workdir on cloud storage (gs://...) works as a local one does."""

import os

import pytest
from etils import epath

from rdmjax import (
  config_lib,
  data,
  files,
  paths,
  stages,
)

HERE = 'configs/x.py'


def test_paths_local_and_remote(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.path('rel') == epath.Path(tmp_path / 'rel')
  assert isinstance(paths.path('rel'), epath.Path)
  assert str(paths.path('gs://bucket/run')) == 'gs://bucket/run'
  assert paths.is_remote('gs://b/x') and not paths.is_remote(tmp_path)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  assert paths.local_cache('data') == epath.Path(
    tmp_path / 'cache' / 'rdmjax' / 'data'
  )


def test_remote_workdir_keeps_the_subject_on_this_hosts_disk(
  tmp_path, monkeypatch
):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  c = config_lib.load_sibling(HERE, 'default', 'tiny')
  assert data.data_root(c, 'gs://bucket/run') == (
    tmp_path / 'cache' / 'rdmjax' / 'data'
  )
  assert data.data_root(c, tmp_path / 'w') == tmp_path / 'w' / 'data'
  assert str(data.embeddings_path(_clip(c), 'gs://bucket/run')) == (
    'gs://bucket/run/embeddings/clip.npz'
  )


def _clip(c):
  with c.unlocked():
    c.data.embeddings = 'clip'
  return c


def test_append_jsonl_rewrites_on_cloud_storage(tmp_path):
  """Cloud objects cannot be appended to: the remote path rewrites."""
  written = []

  def record_open(open_fn, path, mode):
    written.append((os.fspath(path), mode))
    return open_fn(path, mode)

  with epath.testing.mock_epath(open=record_open):
    for k in range(3):
      files.append_jsonl(tmp_path / 'a.jsonl', {'k': k})
  assert (tmp_path / 'a.jsonl').read_text().count('\n') == 3
  assert {m for _, m in written} == {'a'}


@pytest.mark.slow
def test_every_output_of_a_run_goes_through_epath(tmp_path):
  """The tiny pipeline (data, rdm, train with its leaked run) on a local
  workdir, with epath's backend recording what it writes: every file of
  the run outside data/ (the subject, read by memory mapping) was written
  through epath, so the same run can write to gs://."""
  c = config_lib.load_sibling(HERE, 'default', 'tiny')
  with c.unlocked():
    c.train.steps = 10
    c.train.eval_every = 5
    c.train.log_every = 5
    c.ckpt.every = 5
    c.optim.warmup_steps = 2
  w = tmp_path / 'run'
  data.subject_from_config(c, w)  # the subject: local by design
  through = set()

  def record_open(open_fn, path, mode):
    if any(ch in mode for ch in 'wax'):
      through.add(os.path.realpath(path))
    return open_fn(path, mode)

  def record_move(move_fn, src, dst):
    through.add(os.path.realpath(dst))
    return move_fn(src, dst)

  with epath.testing.mock_epath(
    open=record_open, replace=record_move, rename=record_move
  ):
    for stage in ('data', 'rdm', 'train'):
      stages.run(stage, c, w)
  files = {
    os.path.realpath(os.path.join(root, f))
    for root, _, names in os.walk(w)
    for f in names
  }
  outputs = {f for f in files if not f.startswith(str(w / 'data'))}
  # Orbax writes array data through TensorStore (which reads gs:// itself);
  # its metadata goes through epath.
  outputs = {f for f in outputs if '/ckpt/' not in f}
  # TensorBoard event files on a local disk are appended by tensorboardX's
  # record writer; on gs:// rdmjax.training.metric_writer writes them whole through
  # epath (tests/tensorboard_test.py, the remote branch).
  outputs = {f for f in outputs if '/tensorboard/' not in f}
  for name in ('results.json', 'report.md', 'summary.json', 'metrics.jsonl'):
    assert str(w / name) in outputs
  assert any(f.endswith('.png') for f in outputs)
  assert outputs <= through, sorted(outputs - through)
  # Orbax writes under temporary names and renames them: through epath.
  assert any('/ckpt/' in f for f in through), 'orbax bypassed epath'
