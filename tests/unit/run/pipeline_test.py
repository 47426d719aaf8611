"""Stage timings count the XLA programs a stage makes, and stop counting
when it ends; a figure that fails costs that figure alone."""

import json

import jax
import numpy as np
from jax._src import monitoring

from rdmjax.report import figures
from rdmjax.run import pipeline


def test_compiles_counts_programs_while_active_only():
  x = np.arange(7.0, dtype=np.float32)
  with pipeline.Compiles() as c:
    jax.jit(lambda v: v * 3 + 1)(x)  # a new program
    jax.jit(lambda v: v - 2)(x)  # another
  assert c.programs == 2 and c.from_cache == 0 and c.seconds > 0
  jax.jit(lambda v: v / 5)(x)  # after the stage: not counted
  assert c.programs == 2
  assert c._listeners[0] not in monitoring._event_duration_secs_listeners
  assert c._listeners[1] not in monitoring._event_listeners


def broken(*args, path, **kw):
  raise RuntimeError('the plot broke')


def test_a_figure_that_fails_costs_the_figure_not_the_stage(
  tmp_path, monkeypatch, capfd
):
  """The data stage with its one figure failing (drawn in place here: a
  worker's failure takes the same path, `figure_workers_test`): results,
  report and timings are written, the failure is one line."""
  from tiny_run import tiny

  from rdmjax.report import rdm_plots

  monkeypatch.setenv(figures.WORKERS_ENV, '0')
  monkeypatch.setattr(rdm_plots, 'images_and_responses', broken)
  pipeline.run_stages(tiny(), tmp_path, ['data'])
  assert json.loads((tmp_path / 'results.json').read_text())['data']
  assert (tmp_path / 'report.md').read_text().startswith('# rdmjax report')
  row = json.loads((tmp_path / 'timings.jsonl').read_text())
  assert row['figures'] == 1 and row['figures_s'] >= 0
  assert row['work_s'] <= row['wall_s']
  err = capfd.readouterr().err.splitlines()
  want = 'data_images_responses.png not drawn: RuntimeError: the plot broke'
  assert [x for x in err if 'not drawn' in x][0].endswith(want)
