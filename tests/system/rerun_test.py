"""Reruns are explicit: a workdir remembers its config, reuses the stages
it finished with it, refuses another one in one line, and is used by one
run at a time; a run's inputs are checked before its first long stage."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_run import tiny

from rdmjax.errors import InputError
from rdmjax.run import preflight
from rdmjax.run import workdir as workdir_lib

REPO = Path(__file__).resolve().parents[2]
LOG = re.compile(r'[IWEF]\d{4} ')  # absl's log line prefix


def _env() -> dict[str, str]:
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='', TQDM_DISABLE='1')


def _rdmjax(workdir, *flags, mode='data'):
  return subprocess.run(
    [
      sys.executable,
      '-m',
      'rdmjax.main',
      '--config=configs/default.py:tiny',
      f'--workdir={workdir}',
      f'--mode={mode}',
      '--compilation_cache=',
      *flags,
    ],
    cwd=REPO,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )


def _error_line(p) -> str:
  """The one line a stopped run ends with (absl's log lines aside)."""
  lines = [x for x in p.stderr.splitlines() if x.strip() and not LOG.match(x)]
  assert p.returncode == 2, p.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith('rdmjax: error:'), lines
  return lines[0]


def test_rerun_reuses_refuses_another_config_and_overwrites(tmp_path):
  w = tmp_path / 'w'
  first = _rdmjax(w)
  assert first.returncode == 0, first.stderr[-2000:]
  saved = json.loads((w / 'config.json').read_text())
  assert set(json.loads((w / workdir_lib.DONE).read_text())) == {'data'}
  made = (w / 'summary.json').stat().st_mtime_ns
  # The same config: the finished stage is reused, in one line.
  again = _rdmjax(w)
  assert again.returncode == 0, again.stderr[-2000:]
  assert 'rdmjax: data: reused' in again.stdout
  assert (w / 'summary.json').stat().st_mtime_ns == made
  # Another config would mix results: one line, nothing changed.
  line = _error_line(_rdmjax(w, '--config.seed=1'))
  assert 'seed 0 -> 1' in line and '--config.resume=overwrite' in line
  assert json.loads((w / 'config.json').read_text()) == saved
  # Fields no result depends on may change (the progress log's interval).
  assert _rdmjax(w, '--config.train.log_every=3').returncode == 0
  # resume=overwrite: the old results go, the run starts afresh.
  (w / 'report' / 'stale.md').write_text('## an old section\n')
  over = _rdmjax(w, '--config.seed=1', '--config.resume=overwrite')
  assert over.returncode == 0, over.stderr[-2000:]
  assert 'reused' not in over.stdout
  assert json.loads((w / 'config.json').read_text())['seed'] == 1
  assert (w / 'summary.json').stat().st_mtime_ns != made
  assert not (w / 'report' / 'stale.md').exists()  # no old section left


def test_a_run_that_fails_at_its_start_binds_nothing(tmp_path):
  w = tmp_path / 'w'
  line = _error_line(_rdmjax(w, f'--config.data.root={tmp_path / "none"}'))
  assert 'data.root' in line and 'not a folder' in line
  assert not (w / 'config.json').exists()


def test_a_second_run_on_the_workdir_stops_and_a_killed_one_frees_it(
  tmp_path,
):
  w = tmp_path / 'w'
  w.mkdir()
  holder = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'import sys, time\n'
      'from rdmjax.run import workdir\n'
      f'with workdir.lock({str(w)!r}):\n'
      "  print('held', flush=True)\n"
      '  time.sleep(120)\n',
    ],
    cwd=REPO,
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == 'held'
    line = _error_line(_rdmjax(w))
    assert f'pid {holder.pid}' in line and 'another --workdir' in line
  finally:
    holder.send_signal(signal.SIGKILL)  # as a crash: no unlock, no cleanup
    holder.wait()
  done = _rdmjax(w)
  assert done.returncode == 0, done.stderr[-2000:]


def test_lock_in_process_is_exclusive(tmp_path):
  with workdir_lib.lock(tmp_path):
    with pytest.raises(InputError, match='another rdmjax run'):
      with workdir_lib.lock(tmp_path):
        pass
  with workdir_lib.lock(tmp_path):  # released
    pass


def test_differences_ignore_what_no_result_depends_on():
  old = workdir_lib.flat(tiny())
  c = tiny()
  with c.unlocked():
    c.sweep.grid = ((1,), (2,))
    c.train.log_every = 1
    c.ckpt.eval_step = 'latest'
  assert workdir_lib.differences(old, workdir_lib.flat(c)) == []
  with c.unlocked():
    c.train.steps = 7
    c.model.hidden = (8, 8)
  got = workdir_lib.differences(old, workdir_lib.flat(c))
  assert [k for k, _, _ in got] == ['model.hidden', 'train.steps']


# Fail fast (rdmjax.run.preflight).


def _real(datadir):
  c = tiny()
  with c.unlocked():
    c.data.root = str(datadir / 'data')
  return c


def test_real_data_without_embeddings_stops_with_both_ways_on(
  datadir, tmp_path, monkeypatch
):
  monkeypatch.setattr(preflight, '_weights_present', lambda c: False)
  with pytest.raises(InputError) as e:
    preflight.plan(_real(datadir), tmp_path, ('data', 'rdm', 'train'))
  msg = str(e.value)
  assert '\n' not in msg
  assert 'hf download openai/clip-vit-base-patch32' in msg
  assert 'configs/siamese_cnn.py' in msg


def test_real_data_with_weights_embeds_first(datadir, tmp_path, monkeypatch):
  monkeypatch.setattr(preflight, '_weights_present', lambda c: True)
  c, todo = preflight.plan(_real(datadir), tmp_path, ('data', 'rdm', 'train'))
  assert todo == ('data', 'embed', 'rdm', 'train')
  assert c.data.embeddings == 'clip'
  # With the cache there, nothing is added; the Siamese CNN needs none.
  (tmp_path / 'embeddings').mkdir()
  (tmp_path / 'embeddings' / 'clip.npz').write_bytes(b'')
  assert preflight.plan(_real(datadir), tmp_path, ('train',))[1] == ('train',)
  cnn = _real(datadir)
  with cnn.unlocked():
    cnn.model.name = 'siamese_cnn'
  assert preflight.plan(cnn, datadir, ('train',))[1] == ('train',)


def test_missing_subject_unwritable_workdir_and_full_disk(
  datadir, tmp_path, monkeypatch
):
  c = _real(datadir)
  with c.unlocked():
    c.data.subject = 'subj05'
  with pytest.raises(InputError, match='subject subj05 not found'):
    preflight.plan(c, tmp_path, ('data',))
  with pytest.raises(InputError, match='choose a writable --workdir'):
    preflight.plan(tiny(), Path('/proc'), ('data',))

  class Usage:
    free = 1000

  monkeypatch.setattr(preflight.shutil, 'disk_usage', lambda p: Usage)
  with pytest.raises(InputError, match='GiB free'):
    preflight.plan(tiny(), tmp_path, ('data',))
  assert preflight.synthetic_bytes(tiny()) > 1000


def test_embed_without_weights_stops_before_writing_data(tmp_path):
  c = tiny()
  with c.unlocked():
    c.embed.model = 'nobody/no-such-model'
  with pytest.raises(InputError, match='hf download nobody/no-such-model'):
    preflight.plan(c, tmp_path, ('embed',))
  assert not (tmp_path / 'data').exists()


def test_one_data_copy_synth_then_pipeline_and_leaked_run_with_clip(
  datadir, tmp_path
):
  """--mode=synth writes where the pipeline reads (no second subject); the
  leaked run reads the main run's data and CLIP cache (no third copy)."""
  import shutil

  from rdmjax.data import synthetic
  from rdmjax.stages import train as train_stage

  w = tmp_path / 'w'
  assert _rdmjax(w, mode='synth').returncode == 0
  made = sorted(p.relative_to(w).as_posix() for p in w.glob('*/subj01'))
  assert made == ['data/subj01']
  marker = w / 'data' / 'synthetic_extras' / 'subj01' / 'params.json'
  written = marker.stat().st_mtime_ns
  second = _rdmjax(w, mode='data')
  assert second.returncode == 0, second.stderr[-2000:]
  copies = [p.relative_to(w).as_posix() for p in w.rglob('subj01')]
  assert sorted(copies) == ['data/subj01', 'data/synthetic_extras/subj01']
  assert marker.stat().st_mtime_ns == written  # read, not written again
  # A CLIP cache in the main workdir (the synthetic one, renamed).
  v = tmp_path / 'v'
  (v / 'embeddings').mkdir(parents=True)
  (v / 'data').symlink_to(datadir / 'data')
  shutil.copy(
    synthetic.extras_dir(datadir / 'data', 'subj01') / 'embeddings.npz',
    v / 'embeddings' / 'clip.npz',
  )
  c = tiny(**{'train.steps': 4, 'train.eval_every': 2, 'ckpt.every': 2})
  with c.unlocked():
    c.data.embeddings = 'clip'
    c.train.run_leaked = True
    c.train.bootstrap = 20
  train_stage.run(c, v)
  assert (v / 'leaked' / 'ckpt').is_dir()
  assert not (v / 'leaked' / 'data').exists()
  assert not (v / 'leaked' / 'embeddings').exists()


def test_no_bootstrap_and_a_backend_without_its_cache_stop_early(
  datadir, tmp_path
):
  c = tiny(**{'train.bootstrap': 0})
  with pytest.raises(InputError, match='train.bootstrap=0'):
    preflight.plan(c, tmp_path, ('data', 'train'))
  hf = _real(datadir)
  with hf.unlocked():
    hf.embed.backend = 'hf'
  with pytest.raises(InputError, match='embed.backend is not clip'):
    preflight.plan(hf, tmp_path, ('data', 'rdm', 'train'))
