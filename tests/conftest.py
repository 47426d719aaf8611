"""Test setup: 8 fake CPU devices before JAX loads; skip hardware tests."""

import os

os.environ['XLA_FLAGS'] = (
  os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TQDM_DISABLE', '1')

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
  import jax

  platforms = {d.platform for d in jax.devices()}
  for item in items:
    for hw in ('gpu', 'tpu'):
      if hw in item.keywords and hw not in platforms:
        item.add_marker(pytest.mark.skip(reason=f'needs a {hw.upper()}'))
