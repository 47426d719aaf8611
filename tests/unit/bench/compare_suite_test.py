"""The compare suite at tiny size: its rows, rdmjax equal to rsatoolbox on
the compare matrix and the ceiling bounds, compare_models measured where
it exists and a 'missing' row where it does not."""

import json
from pathlib import Path

import numpy as np
import pytest

from rdmjax import bench, config_lib
from rdmjax.bench import compare as suite
from rdmjax.errors import InputError

pytest.importorskip('rsatoolbox')

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'x.py'

KEYS = (
  'suite',
  'n',
  'k',
  'n_subjects',
  'dtype',
  'what',
  'rdmjax_s',
  'rsatoolbox_s',
  'ratio',
  'max_abs_diff',
)


def _config(arg='tiny,suite=compare'):
  c = config_lib.load_sibling(str(CONFIGS), 'bench', arg)
  c.bench.repeats = 1
  return c


def test_config_section_and_defaults():
  c = _config()
  assert c.bench.compare.sizes == (30,) and c.bench.compare.n_boot == 20
  full = config_lib.load_sibling(str(CONFIGS), 'bench', 'suite=compare')
  got = suite.settings(full)
  assert got['sizes'] == (1000, 10000) and got['n_boot'] == 1000
  assert got == suite.DEFAULTS  # the config's knobs are the module's
  # Other suites' configs are as before (no compare section).
  assert (
    'compare'
    not in config_lib.load_sibling(str(CONFIGS), 'bench', 'tiny').bench
  )
  bad = _config()
  bad.bench.compare.dtypes = ('bfloat16',)
  with pytest.raises(InputError, match='bfloat16'):
    suite.settings(bad)
  one = config_lib.load_sibling(str(CONFIGS), 'bench', 'suite=compare,n=500')
  assert one.bench.compare.sizes == (500,)


def test_make_rdms_shared_structure():
  models, subjects = suite.make_rdms(40, 3, 5, seed=1)
  assert models.shape == (3, 780) and subjects.shape == (5, 780)
  assert models.dtype == subjects.dtype == np.float32
  r = np.corrcoef(np.concatenate([models, subjects]))
  assert r[0, 3:].mean() > r[2, 3:].mean() > 0.1  # model 0 fits best


@pytest.mark.bench
def test_tiny_compare_bench_rows_and_agreement(tmp_path):
  records = bench.run(_config(), tmp_path)
  lines = [
    json.loads(s)
    for s in (tmp_path / 'bench.jsonl').read_text().split('\n')
    if s
  ]
  assert lines == json.loads(json.dumps(records, default=str))
  whats = [(r['dtype'], r['what']) for r in records]
  assert whats == [
    ('float32', 'compare'),
    ('float32', 'noise_ceiling'),
    ('float64', 'compare'),
    ('float64', 'noise_ceiling'),
    ('float32', 'bootstrap'),  # boot_dtypes: the draws are the same
  ]
  for r in records:
    for key in KEYS:
      assert key in r, (key, r['what'])
    assert (r['suite'], r['n'], r['k'], r['n_subjects']) == (
      'compare',
      30,
      4,
      8,
    )
    assert r['rsatoolbox_s'] > 0
    if r['what'] in ('compare', 'noise_ceiling'):
      assert r['max_abs_diff'] < 1e-10, r
      assert r['rdmjax_s'] > 0 and r['ratio'] > 0
  boot = [r for r in records if r['what'] == 'bootstrap']
  for r in boot:
    assert r['n_boot'] == 20
    # rsatoolbox's draws: a few, scaled linearly to n_boot.
    assert 2 <= r['scaled_from'] <= 5
    np.testing.assert_allclose(
      r['rsatoolbox_s'], r['rsatoolbox_draws_s'] / r['scaled_from'] * 20
    )
    assert r['status'] in ('measured', 'missing', 'error')
  fn, _ = suite.find_compare_models()
  if fn is None:
    assert {r['status'] for r in boot} == {'missing'}
  else:
    for r in boot:
      assert r['status'] == 'measured', r.get('error')
      assert r['rdmjax_s'] > 0 and r['ratio'] > 0
      # Its point estimates are rdmjax's compare and ceiling: rsatoolbox's.
      assert r['max_abs_diff'] < 1e-10


def test_bootstrap_row_says_missing(monkeypatch):
  monkeypatch.setattr(suite, 'find_compare_models', lambda: (None, None))
  c = _config()
  c.bench.compare.dtypes = ('float32',)
  c.bench.baselines = ()  # no rsatoolbox: its fields are None
  rows = list(suite.run(c))
  assert [r['what'] for r in rows] == ['compare', 'noise_ceiling', 'bootstrap']
  boot = rows[-1]
  assert boot['status'] == 'missing' and 'compare_models' in boot['error']
  assert boot['rdmjax_s'] is None and boot['rsatoolbox_s'] is None
  assert rows[0]['rsatoolbox_s'] is None and rows[0]['max_abs_diff'] is None


def test_rsatoolbox_estimate_from_a_smaller_n():
  class Slow:
    calls = []

    def bootstrap(self, draws):
      self.calls.append(draws)
      return 0.5 * draws

  s = dict(suite.DEFAULTS, n_boot=1000, rsa_budget_s=3.0, rsa_max_draws=20)
  per_draw = {}
  slow = Slow()
  got = suite._rsa_bootstrap(slow, s, 100, per_draw)
  # Two draws (1 s), then as many as fit in 3 s: 6.
  assert slow.calls == [2, 6] and got['scaled_from'] == 6
  assert got['rsatoolbox_s'] == pytest.approx(500.0)
  assert per_draw == {100: 0.5}
  # 100x the pairs: 2 x 50 s a draw > rsa_probe_max_s=60: estimated.
  s['rsa_probe_max_s'] = 60.0
  n = 991  # 991 * 990 / (100 * 99) = 99.1
  big = suite._rsa_bootstrap(slow, s, n, per_draw)
  assert slow.calls == [2, 6]  # not run
  assert big['rsatoolbox_estimated'] and big['estimated_from_n'] == 100
  assert big['scaled_from'] is None
  assert big['rsatoolbox_s'] == pytest.approx(0.5 * 99.1 * 1000)
