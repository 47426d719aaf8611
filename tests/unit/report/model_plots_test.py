"""The model-comparison figure: BH FDR against its definition, golan wings
exactly on the pairs that pass it, robust to 1 or 20 models, NaN scores or
intervals and no ceiling; the adapter of compare_models' result dict."""

import itertools
import pickle

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image
from scipy import stats

from rdmjax.errors import InputError
from rdmjax.report import figures
from rdmjax.report import model_plots as mp


def _brute_bh(p, alpha):
  """BH by its definition: the largest r with p_(r) <= r alpha / m, the r
  smallest finite p rejected (scanning every r, no cumulative tricks)."""
  p = np.asarray(p, float)
  idx = [i for i in range(p.size) if np.isfinite(p.flat[i])]
  m = len(idx)
  srt = sorted(idx, key=lambda i: p.flat[i])
  r_max = 0
  for r in range(1, m + 1):
    if p.flat[srt[r - 1]] <= r * alpha / m:
      r_max = r
  out = np.zeros(p.shape, bool)
  for i in srt[:r_max]:
    out.flat[i] = True
  return out


@pytest.mark.parametrize(
  'p, want',
  [
    ([0.01, 0.04, 0.03, 0.005], [True, True, True, True]),
    ([0.01, 0.02, 0.03, 0.2], [True, True, True, False]),
    ([0.011, 0.012, 0.04, 0.3], [True, True, False, False]),
    # Step-up: 0.02 > 1 x 0.05 / 3 but 0.024 <= 2 x 0.05 / 3, so both go.
    ([0.02, 0.024, 0.9], [True, True, False]),
    ([0.06, 0.5, 0.9], [False, False, False]),
    # Equality passes (p_(r) <= r alpha / m).
    ([0.025, 0.05], [True, True]),
  ],
)
def test_fdr_bh_hand_computed(p, want):
  reject, adj = mp.fdr_bh(p, 0.05)
  assert reject.tolist() == want
  np.testing.assert_array_equal(reject, adj <= 0.05)


def test_fdr_bh_against_brute_force_and_scipy():
  rng = np.random.default_rng(0)
  for trial in range(200):
    m = int(rng.integers(1, 40))
    # A mix of small p (real effects) and uniform ones; some ties.
    p = np.where(rng.random(m) < 0.4, rng.random(m) * 0.01, rng.random(m))
    if trial % 5 == 0:
      p = np.round(p, 2)
    alpha = float(rng.choice([0.01, 0.05, 0.1]))
    reject, adj = mp.fdr_bh(p, alpha)
    np.testing.assert_array_equal(reject, _brute_bh(p, alpha))
    np.testing.assert_allclose(
      adj, stats.false_discovery_control(p, method='bh'), rtol=1e-12
    )


def test_fdr_bh_nan_is_no_test():
  p = np.array([0.02, np.nan, 0.024, 0.9])
  reject, adj = mp.fdr_bh(p, 0.05)
  assert reject.tolist() == [True, False, True, False]  # m = 3
  assert np.isnan(adj[1])
  assert not mp.fdr_bh([np.nan, np.nan])[0].any()
  with pytest.raises(InputError, match=r'\[0, 1\]'):
    mp.fdr_bh([0.5, 1.5])


def _diff_p(k, rng, frac_small=0.5):
  p = np.where(
    rng.random((k, k)) < frac_small,
    rng.random((k, k)) * 0.004,
    rng.random((k, k)),
  )
  p = np.triu(p, 1)
  p = p + p.T
  np.fill_diagonal(p, np.nan)
  return p


def test_significant_pairs_is_bh_over_the_upper_triangle():
  rng = np.random.default_rng(1)
  for k in (1, 2, 3, 7, 20):
    p = _diff_p(k, rng)
    got = mp.significant_pairs(p, 0.05)
    iu = np.triu_indices(k, 1)
    want = np.zeros((k, k), bool)
    want[iu] = _brute_bh(p[iu], 0.05)
    np.testing.assert_array_equal(got, want | want.T)
  bad = np.array([[np.nan, 0.01], [0.2, np.nan]])
  with pytest.raises(InputError, match='symmetric'):
    mp.significant_pairs(bad)


def test_golan_wings_winners_and_unordered_pairs():
  sig = np.zeros((4, 4), bool)
  for a, b in ((0, 1), (0, 3), (1, 2), (2, 3)):
    sig[a, b] = sig[b, a] = True
  values = [0.5, 0.3, 0.1, np.nan]
  wings = mp.golan_wings(sig, values)
  # 0 beats 1; 1 beats 2; 0-3 and 2-3: no order (3 is NaN), on 0's, 2's.
  assert wings == [(0, [1], [3]), (1, [2], []), (2, [], [3])]
  # A tie: on the first model's wing, unordered.
  assert mp.golan_wings(sig[:2, :2], [0.2, 0.2]) == [(0, [], [1])]


def _capture(monkeypatch):
  figs = []

  def capture(fig, path, vector=None):
    fig.canvas.draw()
    figs.append(fig)
    return path

  monkeypatch.setattr(mp, 'save_figure', capture)
  return figs


def _drawn_pairs(fig, names_plotted):
  """Pairs (name, name) drawn as a tick (beats) or open circle (differs)."""
  out = set()
  for ax in fig.axes:
    for line in ax.get_lines():
      lab = line.get_label()
      if lab.startswith(('_beats', '_differs')):
        _, i, j = lab.split()
        out.add(frozenset((names_plotted[int(i)], names_plotted[int(j)])))
  return out


def _tick_labels(fig):
  ax = fig.axes[-1]
  return [t.get_text() for t in ax.get_xticklabels()]


def _overlapping(fig):
  r = fig.canvas.get_renderer()
  texts = [
    (t.get_text(), t.get_window_extent(r), t.get_rotation() != 0)
    for t in set(fig.findobj(Text))
    if t.get_visible() and t.get_text().strip()
  ]
  # Two parallel rotated labels: their boxes (axis-aligned) overlap while
  # the texts do not; each is still checked against every other text.
  return [
    (a, b)
    for (a, ea, ra), (b, eb, rb) in itertools.combinations(texts, 2)
    if ea.width > 0 and eb.width > 0 and ea.overlaps(eb) and not (ra and rb)
  ]


@pytest.mark.parametrize('k, sort', [(5, True), (8, False), (20, 'ascending')])
def test_wings_exactly_on_the_pairs_passing_fdr(tmp_path, monkeypatch, k, sort):
  figs = _capture(monkeypatch)
  rng = np.random.default_rng(k)
  names = [f'm{i}' for i in range(k)]
  values = rng.uniform(0.0, 0.6, k)
  values[k // 2] = np.nan  # a missing score: its pairs still drawn
  p = _diff_p(k, rng, 0.4)
  mp.model_comparison_figure(
    names, values, values - 0.05, values + 0.05, 0.6, 0.7, p,
    tmp_path / 'f.png', sort=sort, n_boot=1000,
  )  # fmt: skip
  (fig,) = figs
  plotted = _tick_labels(fig)
  assert sorted(plotted) == sorted(names)
  iu = np.triu_indices(k, 1)
  sig = _brute_bh(p[iu], 0.05)
  want = {frozenset((names[a], names[b])) for a, b, s in zip(*iu, sig) if s}
  assert want, 'the example should have significant pairs'
  assert _drawn_pairs(fig, plotted) == want
  # Every tick points from a better model to a worse one.
  by = dict(zip(names, values))
  for line in fig.axes[0].get_lines():
    if line.get_label().startswith('_beats'):
      _, i, j = line.get_label().split()
      assert by[plotted[int(i)]] > by[plotted[int(j)]]
  if sort is True:
    shown = [by[n] for n in plotted]
    fin = [v for v in shown if np.isfinite(v)]
    assert fin == sorted(fin, reverse=True) and np.isnan(shown[-1])
  note = fig.get_supxlabel()
  assert 'bootstrap over images, 1000 draws, 95% intervals' in note
  assert 'Benjamini-Hochberg' in note and f'{len(want)} of' in note
  assert fig.axes[-1].get_ylabel() == 'RDM similarity (spearman)'
  assert _overlapping(fig) == []


def test_writes_pngs_for_awkward_inputs(tmp_path):
  rng = np.random.default_rng(3)
  names20 = [f'a_long_model_name_{i}' for i in range(20)]
  v20 = rng.uniform(0, 0.5, 20)
  cases = {
    'one': (['only'], [0.3], [0.2], [0.4], 0.5, 0.6, [[np.nan]]),
    'one_no_p': (['only'], [0.3], None, None, None, None, None),
    'twenty': (names20, v20, v20 - 0.1, v20 + 0.1, None, None,
               _diff_p(20, rng)),
    'nan': (['a', 'b', 'c'], [0.2, np.nan, 0.1], [np.nan, np.nan, 0.0],
            [0.3, np.nan, np.nan], 0.4, np.nan, _diff_p(3, rng)),
    'all_nan': (['a', 'b'], [np.nan, np.nan], None, None, None, None,
                np.full((2, 2), np.nan)),
    'negative': (['a', 'b'], [-0.2, 0.1], [-0.3, 0.0], [-0.1, 0.2],
                 0.05, 0.3, [[np.nan, 0.001], [0.001, np.nan]]),
  }  # fmt: skip
  for name, args in cases.items():
    out = mp.model_comparison_figure(*args, path=tmp_path / f'{name}.png')
    assert out == tmp_path / f'{name}.png'
    with Image.open(out) as im:
      assert im.format == 'PNG' and min(im.size) > 200


def test_twenty_models_rotated_labels_no_overlap(tmp_path, monkeypatch):
  figs = _capture(monkeypatch)
  rng = np.random.default_rng(4)
  names = [f'a_long_model_name_{i}' for i in range(20)]
  v = rng.uniform(0, 0.5, 20)
  mp.model_comparison_figure(
    names, v, v - 0.1, v + 0.1, 0.5, 0.6, _diff_p(20, rng), tmp_path / 'f'
  )
  (fig,) = figs
  labels = fig.axes[-1].get_xticklabels()
  assert {t.get_rotation() for t in labels} == {45.0}
  assert _overlapping(fig) == []


def test_ceiling_band_and_none(tmp_path, monkeypatch):
  figs = _capture(monkeypatch)
  mp.model_comparison_figure(['a', 'b'], [0.1, 0.2], path=tmp_path / 'x',
                             ceiling_lower=0.3, ceiling_upper=0.5)  # fmt: skip
  mp.model_comparison_figure(['a', 'b'], [0.1, 0.2], path=tmp_path / 'y')
  band, none = figs
  ax = band.axes[-1]
  spans = [p for p in ax.patches if p.get_label() == 'noise ceiling']
  assert len(spans) == 1
  y0, h = spans[0].get_y(), spans[0].get_height()  # a Rectangle, y in data
  np.testing.assert_allclose([y0, y0 + h], [0.3, 0.5])
  assert spans[0].get_x() == 0 and spans[0].get_width() == 1  # axes wide
  assert not [
    p for p in none.axes[-1].patches if p.get_label() == 'noise ceiling'
  ]
  assert len(none.axes) == 1  # no pairwise tests: no wing axes


def test_input_errors(tmp_path):
  with pytest.raises(InputError, match='2 values for 3 models'):
    mp.model_comparison_figure(['a', 'b', 'c'], [0.1, 0.2], path=tmp_path / 'f')
  with pytest.raises(InputError, match=r'diff_p shape \(2, 2\)'):
    mp.model_comparison_figure(
      ['a', 'b', 'c'], [0.1, 0.2, 0.3], diff_p=np.eye(2), path=tmp_path / 'f'
    )
  with pytest.raises(InputError, match='no models'):
    mp.model_comparison_figure([], [], path=tmp_path / 'f')
  with pytest.raises(InputError, match='sort'):
    mp.model_comparison_figure(['a'], [0.1], path=tmp_path / 'f', sort='up')


def _result(noise=True):
  """A compare_models result dict by hand, with exactly its keys."""
  names = ['clip', 'alexnet', 'pixels']
  vals = {'clip': 0.31, 'alexnet': 0.22, 'pixels': 0.05}
  rng = np.random.default_rng(0)
  scores = {
    m: {
      'value': v,
      'low': v - 0.04,
      'high': v + 0.05,
      'sd': 0.02,
      'samples': rng.normal(v, 0.02, 50),
    }
    for m, v in vals.items()
  }
  p = np.array(
    [[np.nan, 0.001, 1e-6], [0.001, np.nan, 0.2], [1e-6, 0.2, np.nan]]
  )
  diffs = [
    {'a': names[a], 'b': names[b], 'value': vals[names[a]] - vals[names[b]],
     'low': 0.0, 'high': 0.1, 'sd': 0.02, 'p': p[a, b]}
    for a, b in ((0, 1), (0, 2), (1, 2))
  ]  # fmt: skip
  nc = {
    'lower': {'value': 0.4, 'low': 0.35, 'high': 0.45},
    'upper': {'value': 0.5, 'low': 0.45, 'high': 0.55},
  }
  return {
    'models': names,
    'subjects': ['subj01', 'subj02'],
    'method': 'spearman',
    'over': 'images',
    'n_boot': 1000,
    'level': 0.95,
    'scores': scores,
    'noise_ceiling': nc if noise else None,
    'differences': diffs,
    'diff_p': p,
  }


def test_adapter_reads_the_result_keys(tmp_path, monkeypatch):
  res = _result()
  args = mp.model_comparison_arrays(res)
  assert args['names'] == ['clip', 'alexnet', 'pixels']
  np.testing.assert_allclose(args['values'], [0.31, 0.22, 0.05])
  np.testing.assert_allclose(args['low'], [0.27, 0.18, 0.01])
  np.testing.assert_allclose(args['high'], [0.36, 0.27, 0.10])
  assert (args['ceiling_lower'], args['ceiling_upper']) == (0.4, 0.5)
  np.testing.assert_array_equal(args['diff_p'], res['diff_p'])
  assert (args['method'], args['over'], args['n_boot'], args['level']) == (
    'spearman',
    'images',
    1000,
    0.95,
  )
  pickle.dumps(args)  # plain inputs for figures.draw
  # The p matrix nested under 'differences' is read too.
  nested = dict(res, differences={'diff_p': res['diff_p']})
  del nested['diff_p']
  np.testing.assert_array_equal(
    mp.model_comparison_arrays(nested)['diff_p'], res['diff_p']
  )
  no_nc = mp.model_comparison_arrays(_result(noise=False))
  assert no_nc['ceiling_lower'] is None and no_nc['ceiling_upper'] is None

  figs = _capture(monkeypatch)
  mp.model_comparison_from_result(res, tmp_path / 'r.png', title='V1')
  (fig,) = figs
  plotted = _tick_labels(fig)
  assert plotted == ['clip', 'alexnet', 'pixels']
  # clip-alexnet (0.001) and clip-pixels (1e-6) pass BH at 0.05; not 0.2.
  assert _drawn_pairs(fig, plotted) == {
    frozenset(('clip', 'alexnet')),
    frozenset(('clip', 'pixels')),
  }
  assert 't tests' in fig.get_supxlabel() and fig.get_suptitle() == 'V1'


def test_adapter_writes_a_png_and_draw_takes_the_arrays(tmp_path):
  out = mp.model_comparison_from_result(
    _result(noise=False), tmp_path / 'a.png'
  )
  with Image.open(out) as im:
    assert im.format == 'PNG'
  args = mp.model_comparison_arrays(_result())
  names = args.pop('names')
  got = figures.draw(
    mp.model_comparison_figure, names, path=tmp_path / 'b.png', **args
  )
  assert got == tmp_path / 'b.png' and got.is_file()


def test_adapter_on_a_real_compare_models_result(tmp_path, monkeypatch):
  evaluation = pytest.importorskip('rdmjax.rsa.evaluation')
  rng = np.random.default_rng(0)
  shared = rng.standard_normal(435)
  data = {f's{i}': shared + rng.standard_normal(435) for i in range(4)}
  models = {f'm{i}': w * shared + rng.standard_normal(435) for i, w in
            enumerate((2.0, 1.0, 0.1))}  # fmt: skip
  res = evaluation.compare_models(models, data, 'spearman', 'images', n_boot=50)
  figs = _capture(monkeypatch)
  mp.model_comparison_from_result(res, tmp_path / 'real.png')
  (fig,) = figs
  plotted = _tick_labels(fig)
  assert plotted == ['m0', 'm1', 'm2']
  p = np.asarray(res['diff_p'])
  iu = np.triu_indices(3, 1)
  want = {
    frozenset((plotted[a], plotted[b]))
    for a, b, s in zip(*iu, _brute_bh(p[iu], 0.05))
    if s
  }
  assert _drawn_pairs(fig, plotted) == want
