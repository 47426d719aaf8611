"""Compilation is paid once per run: few programs, none per ROI width.

Counts XLA backend compilations (jax.monitoring): the programs each stage
of the tiny job makes, against bounds; and none while the rdm stage runs
ROIs of vertex counts it has not seen, after one warm-up ROI.
"""

from pathlib import Path

import compiled
import jax
import pytest

from rdmjax import config_lib, data, stages
from rdmjax.stages import rdm as rdm_stage

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def compiles():
  with compiled.programs() as made:  # names: 'jit(f)'
    yield made


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


# Programs per stage of the tiny job (on the tests' 8 CPU devices), about
# 30% over those measured: data 0, rdm 8, train 16 (before shapes were
# shared and eager jnp ops folded into jitted ones: rdm 24, train 32, and
# 24 more on 8 devices, orbax's slices of each replicated leaf). A stage
# over its bound names the programs it made.
MAX_PROGRAMS = {'data': 0, 'rdm': 11, 'train': 20}


def test_tiny_job_programs_per_stage(tmp_path, compiles):
  config = config_lib.load_sibling(
    str(REPO / 'configs' / 'x.py'), 'default', 'tiny'
  )
  jax.clear_caches()  # other tests in this process compiled some already
  made = {}
  for stage in MAX_PROGRAMS:
    del compiles[:]
    stages.run(stage, config, tmp_path)
    made[stage] = sorted(str(e) for e in compiles)
  counts = {k: len(v) for k, v in made.items()}
  over = {k: v for k, v in made.items() if len(v) > MAX_PROGRAMS[k]}
  assert not over, f'programs {counts}, bounds {MAX_PROGRAMS}: {over}'
