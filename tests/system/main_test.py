"""The entry point: the persistent compilation cache is on by default; each
stage's time and peak memory go to stdout and timings.jsonl; a task of a
multi-host group run knows its share."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdmjax.run import group

REPO = Path(__file__).resolve().parents[2]


def test_compilation_cache_fills_the_given_folder(tmp_path):
  cache = tmp_path / 'xla_cache'
  env = dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    XLA_FLAGS='',
    # Cache even the tiny programs of this run (default: >= 1 s compiles).
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
  )
  r = subprocess.run(
    [
      sys.executable,
      '-m',
      'rdmjax.main',
      '--mode=bench',
      '--config=configs/bench.py:tiny,fast',
      f'--workdir={tmp_path / "work"}',
      f'--compilation_cache={cache}',
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert cache.is_dir() and any(cache.iterdir())
  rows = [
    json.loads(line)
    for line in (tmp_path / 'work' / 'timings.jsonl').read_text().splitlines()
  ]
  assert [r['stage'] for r in rows] == ['bench']
  assert rows[0]['wall_s'] > 0 and rows[0]['peak_rss_gb'] > 0.05
  printed = [json.loads(x) for x in r.stdout.splitlines() if '"stage"' in x]
  assert printed == rows


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
