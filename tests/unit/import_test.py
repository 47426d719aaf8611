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


def test_every_stage_has_a_module_with_run():
  """`--mode=X` runs rdmjax.stages.X.run: one module per stage, by name."""
  import importlib

  from rdmjax import main, stages

  for stage in stages.STAGES:
    module = importlib.import_module(f'rdmjax.stages.{stage}')
    assert callable(module.run), stage
  assert set(main.flags.FLAGS['mode'].parser.enum_values) == {
    'all',
    *stages.STAGES,
  }
  assert set(stages.PIPELINE) <= set(stages.STAGES)
