"""A non-editable install runs from any folder: the wheel ships configs/ as
rdmjax/configs/, the default --config is the shipped default.py, and a
README command's `--config=configs/NAME.py:ARG` that does not exist in the
current folder is the shipped config of that name."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_package_list_names_every_folder_of_rdmjax():
  """pyproject.toml lists the packages (rdmjax.configs maps to configs/):
  a new folder of rdmjax/ must be added there, or the wheel lacks it."""
  setup = tomllib.loads((REPO / 'pyproject.toml').read_text())['tool'][
    'setuptools'
  ]
  found = {
    '.'.join(p.parent.relative_to(REPO).parts)
    for p in (REPO / 'rdmjax').rglob('__init__.py')
  }
  assert set(setup['packages']) == found | {'rdmjax.configs'}
  assert setup['package-dir'] == {'rdmjax.configs': 'configs'}


def _run(cmd, cwd, env, timeout=300):
  r = subprocess.run(
    cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
  )
  assert r.returncode == 0, f'{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}'
  return r


@pytest.mark.slow
def test_an_installed_wheel_runs_outside_the_repo(tmp_path):
  """Builds the wheel from a copy of the tree (no build/ in the checkout),
  installs it with `pip install --target` (which leaves the environment's
  editable install alone) and runs it from tmp_path with PYTHONPATH=site.

  The editable install is a meta-path finder that setuptools appends to
  sys.meta_path, after the PathFinder that searches sys.path: PYTHONPATH
  wins, which the first check asserts."""
  # --no-build-isolation (no index needed) builds with this environment's
  # setuptools: a Python 3.12+ venv may have none.
  pytest.importorskip('setuptools', reason='building the wheel needs it')
  if not any(
    importlib.util.find_spec(m)
    for m in ('setuptools.command.bdist_wheel', 'wheel')
  ):
    pytest.skip('this setuptools builds no wheels without the wheel package')
  src, dist, site = (tmp_path / d for d in ('tree', 'dist', 'site'))
  for name in ('rdmjax', 'configs'):
    shutil.copytree(
      REPO / name, src / name, ignore=shutil.ignore_patterns('__pycache__')
    )
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(REPO / name, src / name)
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='', TQDM_DISABLE='1')
  pip = [sys.executable, '-m', 'pip']
  _run(
    [*pip, 'wheel', '--no-deps', '--no-build-isolation', '-w', dist, src],
    tmp_path,
    env,
  )
  (wheel,) = dist.glob('rdmjax-*.whl')
  _run(
    [*pip, 'install', '--no-deps', '--target', str(site), wheel], tmp_path, env
  )
  env['PYTHONPATH'] = str(site)
  py = [sys.executable, '-c']

  r = _run(
    [
      *py,
      'import rdmjax; from rdmjax.run import cli; print(rdmjax.__file__); '
      "c = cli.load_config(cli.resolve_config('configs/siamese_cnn.py:tiny')); "
      'print(cli.default_config()); print(c.model.name, c.train.steps)',
    ],
    tmp_path,
    env,
  )
  module, default, config = r.stdout.splitlines()[-3:]
  assert Path(module).is_relative_to(site), module
  assert Path(default) == site / 'rdmjax' / 'configs' / 'default.py'
  assert config == 'siamese_cnn 30'  # loaded its sibling default.py:tiny

  r = _run([sys.executable, '-m', 'rdmjax.main', '--help'], tmp_path, env)
  assert str(site / 'rdmjax' / 'configs') in r.stdout
  assert 'train.steps=200' in r.stdout
  script = site / 'bin' / 'rdmjax'
  if script.exists():  # pip --target puts the console script there
    r = _run([str(script), '--help'], tmp_path, env)
    assert '--config=configs/default.py' in r.stdout

  work = tmp_path / 'w'
  _run(
    [
      sys.executable,
      '-m',
      'rdmjax.main',
      f'--workdir={work}',
      '--config=configs/default.py:tiny',  # not in tmp_path: the shipped one
      '--config.train.steps=4',
      '--config.train.eval_every=2',
      '--config.ckpt.every=2',
      '--config.train.run_leaked=False',
      # Only to keep the test short: no intervals, one metric.
      '--config.rdm.bootstrap=0',
      '--config.rdm.permutations=0',
      "--config.rdm.metrics=('correlation',)",
      '--compilation_cache=',
    ],
    tmp_path,
    env,
  )
  results = json.loads((work / 'results.json').read_text())
  assert -1 <= results['train']['test']['spearman'] <= 1
