"""A group run: the pipeline per subject of a synthetic population, then
the group section; a failed subject is reported, the others kept."""

import json

import numpy as np
import pytest
from tiny_run import POPULATION

from rdmjax import config_lib, stages
from rdmjax.run import group

POP = POPULATION


def _config():
  c = config_lib.load_sibling('configs/x.py', 'default', 'tiny')
  with c.unlocked():
    c.data.subjects = 'all'
    c.data.population.update(POP)
    c.rdm.rois = ('V1', 'all')
    c.rdm.metrics = ('correlation',)
    c.rdm.bootstrap = 20
    c.rdm.permutations = 20
  return c


def test_group_run_summarises_subjects_and_survives_a_failure(
  tmp_path, monkeypatch
):
  real = stages.run

  def flaky(stage, config, workdir):
    if config.data.subject == 'subj02' and stage == 'rdm':
      raise RuntimeError('simulated failure')
    return real(stage, config, workdir)

  monkeypatch.setattr(stages, 'run', flaky)
  group.run_group(_config(), tmp_path, ('rdm',))
  res = json.loads((tmp_path / 'results.json').read_text())['group']
  assert res['finished'] == ['subj01', 'subj03']
  assert 'simulated failure' in res['failed']['subj02']
  # The mean over subjects of each headline number, from their results.
  per = [
    json.loads((tmp_path / s / 'results.json').read_text())['rdm']
    for s in res['finished']
  ]
  vals = [
    p['rois']['all']['metrics']['correlation']['rsa']['synthetic']['spearman']
    for p in per
  ]
  m = res['summary']['RSA all correlation synthetic']
  assert m['n'] == 2 and m['mean'] == pytest.approx(np.mean(vals))
  cons = res['consistency']
  assert cons['n_shared'] == POP['n_shared']
  v = cons['all correlation']
  assert v['lower'] <= v['upper'] and v['mean'] > 0.1
  for key in ('mean', 'lower', 'upper'):  # bootstrap over the shared images
    iv = v['intervals'][key]
    assert iv['value'] == pytest.approx(v[key], abs=1e-6)
    assert iv['low'] <= iv['value'] <= iv['high']
  text = (tmp_path / 'report.md').read_text()
  assert 'subj02 failed' in text and 'Inter-subject consistency' in text
  assert (tmp_path / 'figures' / 'group.png').is_file()


def test_transfer_matrix_diagonal_is_each_subjects_own_score(tmp_path):
  """Each subject's best checkpoint on every subject's test pairs; on its
  own subject it scores what its own run reported."""
  c = _config()
  with c.unlocked():
    c.data.subjects = 'subj01,subj02'
    c.train.steps = 4
    c.train.eval_every = 2
    c.ckpt.every = 2
    c.train.run_leaked = False
    c.train.bootstrap = 20
  group.run_group(c, tmp_path, ('train',))
  res = json.loads((tmp_path / 'results.json').read_text())['group']
  tr = res['transfer']
  m = np.asarray(tr['matrix'], float)
  assert m.shape == (2, 2) and np.isfinite(m).all(), tr['errors']
  for k, s in enumerate(tr['subjects']):
    own = json.loads((tmp_path / s / 'results.json').read_text())['train']
    assert m[k, k] == pytest.approx(own['test']['spearman'], abs=1e-6)
  low, high = np.asarray(tr['low'], float), np.asarray(tr['high'], float)
  assert (low <= m).all() and (m <= high).all()
  for k, s in enumerate(tr['subjects']):  # own model minus the other's
    d = tr['own_minus_other'][s]
    assert d['value'] == pytest.approx(m[k, k] - m[1 - k, k], abs=1e-6)
    assert d['low'] <= d['value'] <= d['high']
  assert tr['own_minus_other_mean']['n'] == 2
  assert (tmp_path / 'figures' / 'transfer.png').is_file()
