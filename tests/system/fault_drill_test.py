"""The fault drill: `kill -9` during each stage, then a rerun.

A run of the tiny pipeline is killed during its data stage (which writes
the synthetic subject), the rerun during rdm, the next during train; the
last rerun finishes. Its results equal those of an uninterrupted run with
the same seed, timings aside. After every kill, every PNG, npz, npy and
JSON file visible under its final name reads back whole (writes go to a
temporary name and are renamed). Then the same for eval and embed, and a
write that fails for want of space (`ulimit -f`: File too large) ends with
one line and keeps the checkpoints written before it (the run ends with
that line; Orbax's writer threads print tracebacks of the failed write
before it).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# Keys whose values are clock readings, not results.
TIME_KEY = re.compile(r'wall|seconds|elapsed|per_s|_s$|time|date|^at$')
FLAGS = (
  '--config=configs/default.py:tiny',
  '--compilation_cache=',
  '--config.train.run_leaked=False',
  '--config.train.bootstrap=50',
  '--config.rdm.bootstrap=50',
  '--config.rdm.permutations=50',
)

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='', TQDM_DISABLE='1')


def _cmd(workdir, *flags) -> list[str]:
  return [
    sys.executable,
    '-m',
    'rdmjax.main',
    f'--workdir={workdir}',
    # The drill reads the INFO log lines ('stage X', resuming), which a run
    # shows only when asked.
    '--verbosity=0',
    *FLAGS,
    *flags,
  ]


def _run(workdir, *flags, prefix: str = ''):
  cmd = _cmd(workdir, *flags)
  if prefix:  # a shell limit, e.g. ulimit -f
    cmd = ['bash', '-c', f'{prefix} && exec "$@"', 'run', *cmd]
  return subprocess.run(
    cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600
  )


def _kill_during(workdir, stage: str, delay: float, *flags) -> None:
  """Starts a run, and SIGKILLs it `delay` s after it logs `stage`."""
  p = subprocess.Popen(
    _cmd(workdir, *flags),
    cwd=REPO,
    env=_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    for line in p.stderr:
      if re.search(rf'\] stage {stage}$', line.strip()):
        break
    else:
      pytest.fail(f'the run ended before stage {stage}: rc {p.wait()}')
    time.sleep(delay)
  finally:
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stderr.close()


def _all_whole(workdir: Path) -> int:
  """Reads every final-named PNG/npz/npy/JSON file; returns how many."""
  n = 0
  for f in workdir.rglob('*'):
    parts = f.relative_to(workdir).parts
    if not f.is_file() or 'ckpt' in parts or any('tmp' in x for x in parts):
      continue  # checkpoints (Orbax's) and temporary names: not final
    if f.suffix == '.json':
      json.loads(f.read_text())
    elif f.suffix == '.png':
      with Image.open(f) as im:
        im.load()
    elif f.suffix == '.npy':
      np.load(f, allow_pickle=f.name.startswith('mapping_'))
    elif f.suffix == '.npz':
      with np.load(f) as z:
        for k in z.files:
          z[k]
    else:
      continue
    n += 1
  return n


def _results(workdir: Path):
  """results.json without clock readings, the workdir's path as <w>."""
  text = (workdir / 'results.json').read_text().replace(str(workdir), '<w>')
  return _no_times(json.loads(text))


def _no_times(x):
  if isinstance(x, dict):
    return {k: _no_times(v) for k, v in x.items() if not TIME_KEY.search(k)}
  if isinstance(x, list):
    return [_no_times(v) for v in x]
  return x


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted run."""
  w = tmp_path_factory.mktemp('ref')
  p = _run(w)
  assert p.returncode == 0, p.stderr[-3000:]
  return w


def test_kill_during_each_stage_then_rerun_gives_the_same_results(
  reference, tmp_path
):
  w = tmp_path / 'w'
  for stage, delay in (('data', 0.5), ('rdm', 1.0), ('train', 4.0)):
    _kill_during(w, stage, delay)
    _all_whole(w)
  p = _run(w)
  assert p.returncode == 0, p.stderr[-3000:]
  assert 'rdmjax: data: reused' in p.stdout  # finished before the rdm kill
  # A writer killed mid-subject leaves a temporary folder: removed later.
  assert not list((w / 'data').glob('.subj01.synthetic-tmp-*'))
  assert _all_whole(w) > 10
  assert _results(w) == _results(reference)
  # eval: killed, rerun, the same scores as an eval of the reference.
  _kill_during(w, 'eval', 1.0, '--mode=eval')
  _all_whole(w)
  for d in (w, reference):
    p = _run(d, '--mode=eval')
    assert p.returncode == 0, p.stderr[-3000:]
  assert _results(w)['eval'] == _results(reference)['eval']


def test_report_mode_redraws_every_figure_and_the_same_report(
  reference, tmp_path
):
  """--mode=report on a finished run whose figures and report are gone:
  the same report.md, the same PNG bytes, PDFs on asking, nothing run."""
  w = tmp_path / 'moved'
  shutil.copytree(reference, w)  # also: a workdir moved since its run
  report = (w / 'report.md').read_text()
  pngs = {p.name: p.read_bytes() for p in (w / 'figures').glob('*.png')}
  assert len(pngs) >= 15
  shutil.rmtree(w / 'figures')
  for p in [w / 'report.md', *(w / 'report').glob('*.md')]:
    p.unlink()
  results = (w / 'results.json').read_text()
  p = _run(w, '--mode=report', '--vector_figures=pdf')
  assert p.returncode == 0, p.stderr[-3000:]
  assert f'rdmjax: report: {len(pngs)} figures redrawn' in p.stdout
  assert (w / 'report.md').read_text() == report
  assert {p.name: p.read_bytes() for p in (w / 'figures').glob('*.png')} == pngs
  assert len(list((w / 'figures').glob('*.pdf'))) == len(pngs)
  assert (w / 'results.json').read_text() == results
  assert not (reference / 'figures' / 'rdms.pdf').exists()  # not in place


def _steps(ckpt: Path) -> list[int]:
  return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


def test_a_full_disk_during_a_checkpoint_ends_in_one_line_and_keeps_the_old(
  tmp_path,
):
  w = tmp_path / 'w'
  flags = (
    '--mode=train',
    '--config.model.hidden=(512,)',
    '--config.train.steps=40',
    '--config.train.eval_every=4',
    '--config.ckpt.every=4',
  )
  # A first run, killed once it has committed checkpoints.
  p = subprocess.Popen(
    _cmd(w, *flags),
    cwd=REPO,
    env=_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  ckpt = w / 'ckpt'
  t0 = time.monotonic()
  while (not ckpt.is_dir() or len(_steps(ckpt)) < 2) and p.poll() is None:
    assert time.monotonic() - t0 < 300
    time.sleep(0.2)
  p.send_signal(signal.SIGKILL)
  p.wait()
  before = _steps(ckpt)
  assert before
  # The rerun resumes; its next checkpoint is larger than the limit
  # (ulimit -f counts KiB per file): the write fails.
  full = _run(w, *flags, prefix='ulimit -f 100')
  lines = [x for x in full.stderr.splitlines() if x.strip()]
  assert full.returncode == 2, full.stderr[-3000:]
  # It ends with one line. (Orbax's writer threads print their own
  # tracebacks of the failed write before it.)
  assert lines[-1].startswith('rdmjax: error:'), lines[-5:]
  assert sum(x.startswith('rdmjax: error:') for x in lines) == 1
  assert 'File too large' in lines[-1]
  assert set(before) <= set(_steps(ckpt))  # nothing written before is lost
  # With room again, the run resumes from them and finishes.
  done = _run(w, *flags)
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'resum' in done.stderr.lower()


def test_kill_during_embed_then_rerun_gives_the_same_cache(tmp_path):
  """The embed stage (a random tiny CLIP tower): killed, rerun, and its
  cache equals an uninterrupted run's; no partial cache is ever visible."""
  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  import tiny_clip

  tower = tiny_clip.write_config(tmp_path / 'tower')
  flags = (
    '--mode=embed',
    f'--config.embed.model={tower}',
    '--config.embed.random_init=True',
  )
  ref, w = tmp_path / 'ref', tmp_path / 'w'
  p = _run(ref, *flags)
  assert p.returncode == 0, p.stderr[-3000:]
  _kill_during(w, 'embed', 1.0, *flags)
  _all_whole(w)
  p = _run(w, *flags)
  assert p.returncode == 0, p.stderr[-3000:]
  with (
    np.load(ref / 'embeddings' / 'clip.npz') as a,
    np.load(w / 'embeddings' / 'clip.npz') as b,
  ):
    assert a.files == b.files
    for k in a.files:
      np.testing.assert_array_equal(a[k], b[k])
