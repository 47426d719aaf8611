"""The entry point: the persistent compilation cache is on by default and
keeps every program; each stage's time, peak memory and XLA programs go to
stdout and timings.jsonl; no INFO logs unless asked; a task of a
multi-host group run knows its share."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rdmjax.run import group

REPO = Path(__file__).resolve().parents[2]


INFO = re.compile(r'^I\d{4} ')  # an absl INFO line


def _bench(tmp_path, cache, *flags):
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  r = subprocess.run(
    [
      sys.executable,
      '-m',
      'rdmjax.main',
      '--mode=bench',
      '--config=configs/bench.py:tiny,fast',
      f'--workdir={tmp_path / "work"}',
      f'--compilation_cache={cache}',
      *flags,
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  return r


def _rows(tmp_path):
  path = tmp_path / 'work' / 'timings.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_compilation_cache_keeps_every_program_and_timings_say_so(tmp_path):
  """The cache keeps even the tiny programs (no 1 s threshold): a rerun
  loads every program it makes; timings count them; the console shows no
  INFO log lines unless --verbosity is given."""
  cache = tmp_path / 'xla_cache'
  r = _bench(tmp_path, cache)
  assert cache.is_dir() and any(cache.iterdir())
  rows = _rows(tmp_path)
  assert [r['stage'] for r in rows] == ['bench']
  first = rows[0]
  assert first['wall_s'] > 0 and first['peak_rss_gb'] > 0.05
  assert first['programs'] > 0 and first['compile_s'] >= 0
  printed = [json.loads(x) for x in r.stdout.splitlines() if '"stage"' in x]
  assert printed == rows
  assert not [x for x in r.stderr.splitlines() if INFO.match(x)]
  again = _bench(tmp_path, cache, '--verbosity=0')
  second = _rows(tmp_path)[-1]
  assert second['programs'] == first['programs']
  assert second['from_cache'] == second['programs']
  assert [x for x in again.stderr.splitlines() if INFO.match(x)]


@pytest.mark.parametrize(
  'env, want',
  [
    ({}, (0, 1)),
    ({'JAX_PROCESS_ID': '2', 'JAX_NUM_PROCESSES': '4'}, (2, 4)),
    ({'SLURM_PROCID': '1', 'SLURM_NTASKS': '3'}, (1, 3)),
    ({'OMPI_COMM_WORLD_RANK': '0', 'OMPI_COMM_WORLD_SIZE': '2'}, (0, 2)),
    ({'TPU_WORKER_ID': '3', 'TPU_WORKER_HOSTNAMES': 'a,b,c,d'}, (3, 4)),
  ],
)
def test_task_identity_of_a_group_run(monkeypatch, env, want):
  """Which share of the subjects a task of a multi-host group run takes."""
  for k in (
    'JAX_PROCESS_ID',
    'JAX_NUM_PROCESSES',
    'SLURM_PROCID',
    'SLURM_NTASKS',
    'OMPI_COMM_WORLD_RANK',
    'OMPI_COMM_WORLD_SIZE',
    'TPU_WORKER_ID',
    'TPU_WORKER_HOSTNAMES',
  ):
    monkeypatch.delenv(k, raising=False)
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  assert group.task_identity() == want
