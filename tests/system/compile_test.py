"""Compilation is paid once per run: ROIs of other widths compile nothing.

Counts XLA backend compilations (jax.monitoring) while the rdm stage runs
ROIs of vertex counts it has not seen, after one warm-up ROI.
"""

from pathlib import Path

import jax
import pytest

from rdmjax import config_lib, data
from rdmjax.stages import rdm as rdm_stage

REPO = Path(__file__).resolve().parents[2]
COMPILE = '/jax/core/compile/backend_compile_duration'


@pytest.fixture
def compiles():
  events = []

  def listen(name, secs, **kw):
    if name == COMPILE:
      events.append(kw)

  jax.monitoring.register_event_duration_secs_listener(listen)
  yield events
  jax.monitoring.unregister_event_duration_listener(listen)


def _config(rois):
  c = config_lib.load_sibling(str(REPO / 'configs' / 'x.py'), 'default', 'tiny')
  with c.unlocked():
    c.rdm.rois = rois
  return c


def test_no_recompile_between_rois(tmp_path, compiles):
  subject = data.subject_from_config(_config(('V1',)), tmp_path)
  widths = {
    roi: int(sum(m.sum() for m in subject.roi_mask(roi)))
    for roi in ('V1', 'floc-faces', 'all')
  }
  assert len(set(widths.values())) == 3, widths
  jax.clear_caches()  # other tests in this process compiled some already
  rdm_stage.run(_config(('V1',)), tmp_path)  # warm-up: one ROI, 2 metrics
  assert compiles, 'the listener sees compilations'
  del compiles[:]
  rdm_stage.run(_config(('floc-faces', 'all')), tmp_path)
  assert not compiles, f'{len(compiles)} programs compiled for new ROIs'
