"""Figures drawn by worker processes (`rdmjax.report.figures`): the same
files as drawn in place, no JAX in the workers, a failed figure or a dead
worker costs that figure alone, and every figure recorded for
`--mode=report` (also after the workdir moved)."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rdmjax.report import figures, plots

HERE = Path(__file__).resolve().parent


# Plot functions for the workers, which import them from this module by
# name (PYTHONPATH below).
def line_plot(values, path):
  fig, ax = plots.pyplot().subplots(figsize=(3, 2), layout='constrained')
  ax.plot(values)
  ax.set_xlabel('step')
  return plots.save_figure(fig, path)


def fails(path):
  raise ValueError('no good')


def dies(path):
  os._exit(3)


def modules(path):
  Path(path).write_text(' '.join(sorted(sys.modules)))
  return path


@pytest.fixture
def workers(monkeypatch):
  path = os.pathsep.join(
    filter(None, [str(HERE), os.environ.get('PYTHONPATH')])
  )
  monkeypatch.setenv('PYTHONPATH', path)
  w = figures.Workers(1)
  yield w
  w.close()


def test_outside_a_stage_a_figure_is_drawn_in_place(tmp_path):
  got = figures.draw(line_plot, [1, 3, 2], path=tmp_path / 'a.png')
  assert got == tmp_path / 'a.png' and got.read_bytes()[:4] == b'\x89PNG'
  assert not (tmp_path / figures.RECORDS).exists()


def test_a_worker_draws_the_same_file_as_in_place_without_jax(
  tmp_path, workers
):
  values = np.sin(np.arange(50) / 5)
  figures.draw(line_plot, values, path=tmp_path / 'here.png')
  with figures.collecting(tmp_path, 'rdm', workers) as got:
    out = figures.draw(line_plot, values, path=tmp_path / 'worker.png')
    figures.draw(modules, path=tmp_path / 'modules.txt')
    assert out == tmp_path / 'worker.png'  # at once, before it is drawn
  assert got.n == 2 and not got.failed and got.wait_s >= 0
  here, there = (
    (tmp_path / f).read_bytes() for f in ('here.png', 'worker.png')
  )
  assert here == there
  loaded = (tmp_path / 'modules.txt').read_text().split()
  assert 'matplotlib' in loaded and 'jax' not in loaded


def test_vector_formats_travel_to_the_worker(tmp_path, workers, monkeypatch):
  monkeypatch.setattr(plots, 'VECTOR_FORMATS', ('pdf',))
  with figures.collecting(tmp_path, 'rdm', workers):
    figures.draw(line_plot, [1, 2], path=tmp_path / 'v.png')
  assert (tmp_path / 'v.pdf').read_bytes().startswith(b'%PDF')


def test_a_failed_figure_or_a_dead_worker_costs_that_figure(
  tmp_path, workers, capfd
):
  with figures.collecting(tmp_path, 'train', workers) as got:
    figures.draw(fails, path=tmp_path / 'x.png')
    figures.draw(dies, path=tmp_path / 'y.png')
    figures.draw(line_plot, [1, 2], path=tmp_path / 'z.png')
  assert (tmp_path / 'z.png').is_file()
  why = dict(got.failed)
  assert why[str(tmp_path / 'x.png')] == 'ValueError: no good'
  assert 'worker died (exit code 3)' in why[str(tmp_path / 'y.png')]
  err = [x for x in capfd.readouterr().err.splitlines() if 'not drawn' in x]
  assert len(err) == 2, err
  assert (
    err[0]
    == f'rdmjax: figure {tmp_path / "x.png"} not drawn: ValueError: no good'
  )


def test_in_place_failures_are_caught_too(tmp_path):
  with figures.collecting(tmp_path, 'train') as got:
    figures.draw(fails, path=tmp_path / 'x.png')
    figures.draw(line_plot, [1, 2], path=tmp_path / 'z.png')
  assert got.n == 2 and [p for p, _ in got.failed] == [str(tmp_path / 'x.png')]
  assert (tmp_path / 'z.png').is_file()


def test_recorded_figures_are_redrawn_in_a_moved_workdir(tmp_path, workers):
  old, new = tmp_path / 'old', tmp_path / 'new'
  with figures.collecting(old, 'rdm', workers):
    figures.draw(line_plot, [3, 1, 2], path=old / 'figures' / 'a.png')
  with figures.collecting(old, 'train', workers):
    figures.draw(line_plot, [5, 6], path=old / 'figures' / 'b.png')
  png = (old / 'figures' / 'a.png').read_bytes()
  shutil.move(old, new)
  for f in (new / 'figures').iterdir():
    f.unlink()
  assert [j.fn for j in figures.recorded(new)['rdm']] == [
    'figure_workers_test:line_plot'
  ]
  with figures.collecting(new, 'report', workers) as got:
    assert figures.redraw(new) == 2
  assert got.n == 2 and not got.failed
  assert (new / 'figures' / 'a.png').read_bytes() == png
  assert (new / 'figures' / 'b.png').is_file() and not old.exists()
  # Not recorded again: a second redraw draws the same two.
  assert sorted(figures.recorded(new)) == ['rdm', 'train']


def test_a_plot_function_names_its_path(tmp_path):
  with figures.collecting(tmp_path, 'rdm'):
    with pytest.raises(TypeError, match='path='):
      figures.draw(np.mean, [1, 2])


def test_worker_count_from_the_environment(monkeypatch):
  monkeypatch.setenv(figures.WORKERS_ENV, '0')
  assert figures.default_workers() == 0
  monkeypatch.setenv(figures.WORKERS_ENV, '3')
  assert figures.default_workers() == 3
  monkeypatch.delenv(figures.WORKERS_ENV)
  assert 1 <= figures.default_workers() <= 4
