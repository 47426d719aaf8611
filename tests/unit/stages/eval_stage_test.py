"""`--mode=eval` writes its results, its report section and a summary line;
results.json is always strict JSON (NaN and infinities as null)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from tiny_run import tiny, workdir

from rdmjax import files, report
from rdmjax.report import train as train_report
from rdmjax.stages import eval as eval_stage
from rdmjax.stages import train as train_stage
from rdmjax.training import loop as train


def _strict(text: str):
  """json.loads that refuses NaN, Infinity and -Infinity."""

  def refuse(name):
    raise ValueError(f'not JSON: {name}')

  return json.loads(text, parse_constant=refuse)


def test_eval_writes_results_report_section_and_summary(
  datadir, tmp_path, capsys
):
  c = tiny(**{'train.steps': 4, 'train.eval_every': 2, 'ckpt.every': 2})
  with c.unlocked():
    c.train.bootstrap = 30
  w = workdir(datadir, tmp_path)
  trained = train_stage.run(c, w)
  capsys.readouterr()
  out = eval_stage.run(c, w)
  printed = capsys.readouterr().out

  results = _strict((w / 'results.json').read_text())
  ev = results['eval']
  assert 'train' in results, 'the other stages are kept'
  # The best checkpoint, as training chose and scored it.
  assert ev['which'] == 'best' and ev['step'] == trained['best_step']
  assert ev['val_spearman'] == pytest.approx(trained['val_best'], abs=1e-6)
  for k in ('spearman', 'pearson', 'r2'):
    assert ev['test'][k] == pytest.approx(trained['test'][k], abs=1e-5)
  assert ev['n_pairs'] == trained['test']['n_pairs'] == ev['test']['n_pairs']
  assert ev['bootstrap'] == 30
  # Model, baselines and ceiling with intervals, on the same pairs.
  assert {'model', 'ceiling', 'zero_shot', 'ridge'} <= set(ev['scores'])
  m = ev['scores']['model']
  for stat in ('spearman', 'fraction_of_ceiling'):
    assert m[stat]['low'] <= m[stat]['value'] <= m[stat]['high']
  assert ev == json.loads(json.dumps(files.finite_json(out)))
  for f in ev['figures'].values():
    assert (w / f).is_file() and f.startswith('figures/eval_test_')
  assert set(ev['figures']) == {'test_rdms', 'test_scatter'}

  # report.md: its own section (after train's), the same numbers.
  text = (w / 'report.md').read_text()
  assert (w / 'report' / 'eval.md').is_file()
  section = text[text.index('## Evaluation') :]
  assert text.index('## Training') < text.index('## Evaluation')
  assert f'checkpoint step {ev["step"]}' in section
  assert f'validation Spearman {ev["val_spearman"]:.3f}' in section
  spearman = train_report.with_interval(m['spearman'])
  fraction = train_report.with_interval(m['fraction_of_ceiling'])
  ceiling = train_report.with_interval(ev['scores']['ceiling']['spearman'])
  assert f'| trained model | {spearman} |' in section
  assert f'| {fraction} |' in section
  assert f'| ceiling (noiseless) | {ceiling} |' in section
  assert '| zero-shot RSA |' in section and '| ridge encoding |' in section
  assert '30 draws' in section
  for f in ev['figures'].values():
    assert f'({f})' in section

  # stdout: one short line with the step, the interval, the ceiling.
  lines = [x for x in printed.splitlines() if x.startswith('eval:')]
  assert len(lines) == 1, printed
  assert f'checkpoint step {ev["step"]}' in lines[0]
  assert f'test Spearman {spearman}' in lines[0]
  assert f'{fraction} of ceiling' in lines[0]

  # A rerun replaces the section: one eval section in report.md.
  eval_stage.run(c, w)
  assert (w / 'report.md').read_text().count('## Evaluation') == 1


def test_results_json_is_strict_json_with_nan_as_null(tmp_path):
  nan, inf = float('nan'), float('inf')
  report.update_results(tmp_path, 'before', {'kept': 1.5})
  report.update_results(
    tmp_path,
    'train',
    {
      'pairs_per_s': nan,
      'nested': {'a': [1.0, inf, {'b': -inf}], 'c': (nan, 2)},
      'np32': np.float32('nan'),
      'np64': np.float64('-inf'),
      'finite32': np.float32(0.5),
      'int': np.int64(3),
      'array': np.array([[1.0, np.nan], [np.inf, 2.0]], np.float32),
      'empty': np.array([]),
      'jax': jnp.array([jnp.nan, 1.0]),
      'flag': np.bool_(True),
      'text': 'NaN',
      'none': None,
    },
  )
  got = _strict((tmp_path / 'results.json').read_text())
  assert got['before'] == {'kept': 1.5}
  t = got['train']
  assert t['pairs_per_s'] is None
  assert t['nested'] == {'a': [1.0, None, {'b': None}], 'c': [None, 2]}
  assert t['np32'] is None and t['np64'] is None
  assert t['finite32'] == 0.5 and t['int'] == 3 and t['flag'] is True
  assert t['array'] == [[1.0, None], [None, 2.0]]
  assert t['jax'] == [None, 1.0]
  assert t['empty'] == [] and t['text'] == 'NaN' and t['none'] is None


def test_results_json_cleans_nan_an_older_version_wrote(tmp_path):
  (tmp_path / 'results.json').write_text(
    '{"train": {"pairs_per_s": NaN, "x": [Infinity, 1]}}\n'
  )
  report.update_results(tmp_path, 'eval', {'step': 4})
  got = _strict((tmp_path / 'results.json').read_text())
  assert got == {
    'train': {'pairs_per_s': None, 'x': [None, 1]},
    'eval': {'step': 4},
  }


def test_a_non_finite_number_left_raises(monkeypatch):
  """allow_nan=False: a NaN the cleaning missed raises, never 'NaN'."""
  monkeypatch.setattr(files, 'finite_json', lambda x: x)
  with pytest.raises(ValueError, match='Out of range float'):
    files.dumps_results({'x': [float('nan')]})


def test_a_rerun_that_trains_no_step_writes_valid_json(datadir, tmp_path):
  """A finished workdir rerun resumes at the end: no step, no throughput
  (NaN pairs_per_s), written as null."""
  c = tiny(**{'train.steps': 2, 'ckpt.every': 1, 'train.eval_every': 1})
  with c.unlocked():
    c.train.bootstrap = 10
  w = workdir(datadir, tmp_path)
  train.train(c, w)
  res = train_stage.run(c, w)
  assert np.isnan(res['pairs_per_s'])
  got = _strict((w / 'results.json').read_text())
  assert got['train']['pairs_per_s'] is None
