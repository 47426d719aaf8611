"""Every launch/ script's dry run prints exactly what it would run, and the
rdmjax commands in it name flags and config fields that exist."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def dry_run(script: str, *args: str, **env: str) -> list[list[str]]:
  """The commands a script prints with DRY_RUN=1, split as the shell would."""
  full = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
  full.update(DRY_RUN='1', **env)
  r = subprocess.run(
    ['bash', f'launch/{script}', *args],
    env=full,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert r.returncode == 0, r.stderr
  return [shlex.split(line) for line in r.stdout.splitlines() if line]


def _rdmjax_args(cmd: list[str]) -> list[str]:
  """The flags after `-m rdmjax.main` in a command."""
  i = cmd.index('rdmjax.main')
  return cmd[i + 1 :]


CHECK = """
import sys
from absl import flags
from rdmjax import main, stages
flags.FLAGS(['rdmjax', *sys.argv[1:]])
assert flags.FLAGS.config is not None  # loads the config, applies overrides
assert flags.FLAGS.mode in ('all', *stages.STAGES)
print('ok')
"""


def _check_flags(args: list[str], tmp_path) -> None:
  """Parses the flags with rdmjax.main's own flag definitions and applies
  the config overrides: an unknown flag or config field fails."""
  r = subprocess.run(
    [sys.executable, '-c', CHECK, *args],
    cwd=REPO,  # config paths are relative to the repo, as launched
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr[-2000:]


def test_gpu_one_host(tmp_path):
  (cmd,) = dry_run('gpu.sh', '--config.train.steps=3', WORKDIR='/w')
  assert cmd[:2] == ['env', 'XLA_PYTHON_CLIENT_PREALLOCATE=false']
  args = _rdmjax_args(cmd)
  assert '--jax_distributed' not in args
  assert '--workdir=/w' in args and '--config.train.steps=3' in args
  _check_flags(args, tmp_path)


def test_gpu_hosts_by_coordinator_and_by_slurm(tmp_path):
  (cmd,) = dry_run(
    'gpu.sh',
    WORKDIR='/w',
    COORDINATOR='host0:1234',
    NUM_PROCESSES='4',
    PROCESS_ID='2',
  )
  assert 'JAX_COORDINATOR_ADDRESS=host0:1234' in cmd
  assert 'JAX_NUM_PROCESSES=4' in cmd and 'JAX_PROCESS_ID=2' in cmd
  assert '--jax_distributed' in cmd
  (cmd,) = dry_run('gpu.sh', WORKDIR='/w', SLURM_JOB_ID='7', SLURM_NTASKS='2')
  assert '--jax_distributed' in cmd
  assert not [c for c in cmd if c.startswith('JAX_COORDINATOR')]
  _check_flags(_rdmjax_args(cmd), tmp_path)


def test_slurm_sbatch_runs_gpu_sh_per_task():
  (cmd,) = dry_run('slurm.sbatch', '--config.seed=1', WORKDIR='/w')
  assert cmd[0] == 'srun' and cmd[-2:] == [
    str(REPO / 'launch' / 'gpu.sh'),
    '--config.seed=1',
  ]
  text = (REPO / 'launch' / 'slurm.sbatch').read_text()
  assert '#SBATCH --ntasks-per-node=1' in text


def test_tpu_vm_runs_the_same_command_on_every_worker(tmp_path):
  cmds = dry_run(
    'tpu_vm.sh',
    '--config.seed=1',
    TPU_NAME='v5e-32',
    ZONE='us-west4-a',
    WORKDIR='/mnt/runs',
    SETUP='1',
    REPO='https://example.com/rdmjax.git',
  )
  assert len(cmds) == 2  # setup, then the run
  for cmd in cmds:
    assert cmd[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh']
    assert '--worker=all' in cmd and '--zone=us-west4-a' in cmd
  remote = next(c for c in cmds[1] if c.startswith('--command='))
  run = shlex.split(remote.split('&&')[-1])
  assert '--jax_distributed' in run and '--config.seed=1' in run
  _check_flags(_rdmjax_args(run), tmp_path)


@pytest.mark.parametrize(
  'script', ['gpu_rdm_bench.sh', 'gpu_pairs_bench.sh', 'gpu_e2e_bench.sh']
)
def test_gpu_benchmarks(script, tmp_path):
  cmds = [c for c in dry_run(script) if 'rdmjax.main' in c]
  assert cmds
  for cmd in cmds:
    assert cmd[0] in ('python', sys.executable, 'python3')
    _check_flags(_rdmjax_args(cmd), tmp_path)
