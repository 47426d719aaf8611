"""Several JAX processes on this machine give what one process gives.

Each test starts N processes as SLURM would start N tasks on one node
(SLURM's variables for localhost; `jax.distributed.initialize()` reads them
and runs its coordinator on localhost; CPU collectives over Gloo), each with
8 / N fake CPU devices, and compares with one process of 8 devices.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_run import POPULATION

REPO = Path(__file__).resolve().parents[2]
N_DEVICES = 8


def _env(n_proc: int, rank: int, job: int, how: str) -> dict[str, str]:
  """A task's environment: 'slurm' (SLURM's variables for n_proc tasks on
  localhost; JAX derives the coordinator's port from the job id) or
  'coordinator' (launch/gpu.sh's COORDINATOR, NUM_PROCESSES, PROCESS_ID)."""
  env = dict(os.environ)
  env.update(
    JAX_PLATFORMS='cpu',
    XLA_FLAGS=f'--xla_force_host_platform_device_count={N_DEVICES // n_proc}',
    TQDM_DISABLE='1',
  )
  if n_proc > 1 and how == 'slurm':
    env.update(
      SLURM_JOB_ID=str(job),
      SLURM_NTASKS=str(n_proc),
      SLURM_STEP_NUM_TASKS=str(n_proc),
      SLURM_PROCID=str(rank),
      SLURM_LOCALID=str(rank),
      SLURM_NODELIST='localhost',
      SLURM_STEP_NODELIST='localhost',
      SLURM_JOB_NUM_NODES='1',
      SLURM_STEP_NUM_NODES='1',
      SLURM_TASKS_PER_NODE=str(n_proc),
      SLURM_STEP_TASKS_PER_NODE=str(n_proc),
    )
  elif n_proc > 1:
    env.update(
      COORDINATOR=f'localhost:{20000 + job}',
      NUM_PROCESSES=str(n_proc),
      PROCESS_ID=str(rank),
    )
  return env


def launch(
  n_proc: int, argv: list[str], how: str = 'slurm', timeout: int = 400
) -> list[str]:
  """Runs argv as n_proc tasks; returns their outputs (all must exit 0)."""
  job = random.randrange(1, 4000)
  procs = [
    subprocess.Popen(
      argv,
      env=_env(n_proc, rank, job, how),
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for rank in range(n_proc)
  ]
  outs = []
  for p in procs:
    try:
      out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
    outs.append(out)
  for rank, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, f'process {rank}:\n{out[-3000:]}'
  return outs


def _main(workdir, *flags, n_proc: int, how: str = 'slurm') -> list[str]:
  """The main job through launch/gpu.sh, as a user starts it."""
  os.environ.update(
    WORKDIR=str(workdir),
    CONFIG='configs/default.py:tiny',
    PYTHON=sys.executable,
  )
  try:
    return launch(
      n_proc,
      ['bash', 'launch/gpu.sh', '--compilation_cache=', *flags],
      how,
    )
  finally:
    for k in ('WORKDIR', 'CONFIG', 'PYTHON'):
      os.environ.pop(k)


RDM_WORKER = """
import jax, numpy as np
from jax.experimental import multihost_utils
jax.distributed.initialize()
from rdmjax.rsa import rdm as rdm_lib
x = np.random.default_rng(0).normal(size=(203, 64)) + 3.0
mesh = jax.make_mesh((jax.device_count(),), ('data',))
for metric in ('correlation', 'euclidean'):
  r = rdm_lib.rdm(x, metric, mesh=mesh)
  r = multihost_utils.process_allgather(r, tiled=True)
  if jax.process_index() == 0:
    np.save(f'{OUT}/{metric}.npy', np.asarray(r))
"""


def test_sharded_rdm_over_two_processes_equals_float64(tmp_path):
  from scipy.spatial.distance import pdist, squareform

  code = RDM_WORKER.replace('{OUT}', str(tmp_path))
  launch(2, [sys.executable, '-c', code])
  x = np.random.default_rng(0).normal(size=(203, 64)) + 3.0
  for metric in ('correlation', 'euclidean'):
    got = np.load(tmp_path / f'{metric}.npy')
    want = squareform(pdist(x, metric))
    np.testing.assert_allclose(got, want, atol=2e-5 * want.max())
    np.testing.assert_array_equal(got, got.T)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The tiny main job as 1 process (8 devices) and as 2 SLURM tasks."""
  out = {}
  for n_proc in (1, 2):
    w = tmp_path_factory.mktemp(f'p{n_proc}')
    logs = _main(w, n_proc=n_proc)
    out[n_proc] = (w, logs)
  return out


def _results(w: Path) -> dict:
  return json.loads((w / 'results.json').read_text())


@pytest.mark.slow
def test_main_job_as_two_slurm_tasks_equals_one_process(runs):
  (w1, _), (w2, logs) = runs[1], runs[2]
  a, b = _results(w1), _results(w2)
  for key in ('r2', 'pearson', 'spearman'):
    np.testing.assert_allclose(
      b['train']['test'][key], a['train']['test'][key], rtol=1e-4, atol=1e-5
    )
  assert b['train']['test']['n_pairs'] == a['train']['test']['n_pairs']
  assert b['train']['best_step'] == a['train']['best_step']
  ra, rb = a['rdm']['rois'], b['rdm']['rois']
  assert ra.keys() == rb.keys()
  for roi in ra:
    for metric, x in ra[roi]['metrics'].items():
      y = rb[roi]['metrics'][metric]
      for key in ('min', 'max', 'mean', 'std'):
        np.testing.assert_allclose(y[key], x[key], rtol=1e-5)
      np.testing.assert_allclose(
        y['histogram']['counts'], x['histogram']['counts'], atol=2
      )
      for src, v in x['rsa'].items():
        np.testing.assert_allclose(
          y['rsa'][src]['spearman'], v['spearman'], atol=1e-5
        )
  # Only process 0 writes: one line per stage and per logged step, no
  # temporary files left, and only process 0 prints the report.
  stages = [
    json.loads(x)['stage']
    for x in (w2 / 'timings.jsonl').read_text().splitlines()
  ]
  assert stages == ['data', 'rdm', 'train']
  steps = [
    json.loads(x)['step']
    for x in (w2 / 'metrics.jsonl').read_text().splitlines()
  ]
  assert len(steps) == len(set(steps))
  assert not [p for p in w2.rglob('*') if 'tmp' in p.name.lower()]
  assert 'report:' in logs[0] and 'report:' not in logs[1]
  assert '"stage"' not in logs[1]


@pytest.mark.slow
@pytest.mark.parametrize('n_proc', [1, 4])
def test_checkpoint_restores_into_other_process_counts(runs, n_proc):
  w2, _ = runs[2]
  # 4 processes started as without SLURM: COORDINATOR, NUM_PROCESSES, ...
  _main(w2, '--mode=eval', n_proc=n_proc, how='coordinator')
  got, want = _results(w2)['eval']['test'], _results(w2)['train']['test']
  for key in ('r2', 'pearson', 'spearman'):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_group_run_deals_subjects_over_two_processes(tmp_path):
  """A group run as 2 SLURM tasks: task 0 runs subj01 and subj03, task 1
  subj02, each as a single-process JAX run on its own devices; task 0
  waits for task 1, then writes the group section, restoring task 1's
  checkpoint for the transfer matrix."""
  flags = [
    f'--config.data.population.{k}={v}' for k, v in POPULATION.items()
  ] + [
    '--config.data.subjects=all',
    "--config.rdm.metrics=('correlation',)",
    '--config.rdm.bootstrap=20',
    '--config.rdm.permutations=20',
    '--config.train.run_leaked=False',
    '--config.train.bootstrap=20',
  ]
  logs = _main(tmp_path, *flags, n_proc=2)
  ran = [
    {
      json.loads(x)['stage']
      for x in out.splitlines()
      if x.startswith('{"stage')
    }
    for out in logs
  ]
  assert {'subj01/train', 'subj03/train', 'group'} <= ran[0]
  assert 'subj02/train' in ran[1] and not any('subj01' in s for s in ran[1])
  res = _results(tmp_path)['group']
  assert res['finished'] == ['subj01', 'subj02', 'subj03'], res['failed']
  tr = res['transfer']
  m = np.asarray(tr['matrix'], float)
  assert np.isfinite(m).all(), tr['errors']
  for k, s in enumerate(tr['subjects']):
    own = _results(tmp_path / s)['train']['test']['spearman']
    assert m[k, k] == pytest.approx(own, abs=1e-5)
    assert (tmp_path / s / 'timings.jsonl').is_file()
