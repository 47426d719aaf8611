"""Test setup: 8 fake CPU devices before JAX loads; skip hardware tests."""

import os

os.environ['XLA_FLAGS'] = (
  os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TQDM_DISABLE', '1')
# Figures as PNG only (a PDF beside each adds ~0.7 s a figure); the tests
# that check the vector copies turn them on (figures_test, analysis_test).
os.environ.setdefault('RDMJAX_VECTOR_FIGURES', '')

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
  import jax

  platforms = {d.platform for d in jax.devices()}
  for item in items:
    for hw in ('gpu', 'tpu'):
      if hw in item.keywords and hw not in platforms:
        item.add_marker(pytest.mark.skip(reason=f'needs a {hw.upper()}'))


@pytest.fixture(scope='module')
def datadir(tmp_path_factory):
  """A workdir holding the tiny synthetic subject (written once a module)."""
  from tiny_run import tiny

  from rdmjax.training import loop as train

  d = tmp_path_factory.mktemp('data')
  train.load_data(tiny(), d)
  return d


@pytest.fixture
def copy(root, tmp_path):
  """A private copy of the module's subject (its `root` fixture) to damage."""
  import shutil

  shutil.copytree(root / 'subj01', tmp_path / 'subj01')
  return tmp_path
