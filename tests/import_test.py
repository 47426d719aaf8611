"""Importing every rdmjax module touches no device (DESIGN.md, Contracts)."""

import subprocess
import sys

CODE = """
import importlib, pkgutil, rdmjax
from jax._src import xla_bridge
for m in pkgutil.walk_packages(rdmjax.__path__, 'rdmjax.'):
  importlib.import_module(m.name)
assert not xla_bridge._backends, 'a backend was initialised at import'
print('ok')
"""


def test_import_touches_no_device():
  r = subprocess.run(
    [sys.executable, '-c', CODE], capture_output=True, text=True, timeout=300
  )
  assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr[-2000:]
