"""rdmjax.rsa.evaluation against rsatoolbox: every draw over images equal to
rsatoolbox's compare on the same resampled images, intervals like
rsatoolbox's bootstraps, the dual bootstrap's correction, missing pairs."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from rdmjax.errors import InputError
from rdmjax.rsa import compare, evaluation, group, inference

rsatoolbox = pytest.importorskip('rsatoolbox')
from rsatoolbox.rdm import RDMs  # noqa: E402

N = 24


def _data(seed=0, k=5, n=N, noise=0.8):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 10))
  data = np.stack(
    [
      pdist(x + noise * rng.standard_normal(x.shape), 'correlation')
      for _ in range(k)
    ]
  )
  models = np.stack(
    [
      pdist(x + s * rng.standard_normal(x.shape), 'correlation')
      for s in (0.5, 2.0)
    ]
  )
  # A categorical model: two values, two large tie groups.
  cat = np.arange(n) % 2
  models = np.concatenate([models, pdist(cat[:, None], 'cityblock')[None]])
  return models, data


RSA = ('spearman', 'corr', 'rho-a', 'cosine', 'tau-a', 'tau-b')


@pytest.mark.parametrize('method', RSA)
def test_each_draw_equals_rsatoolbox_on_the_same_images(method):
  models, data = _data()
  rng = np.random.default_rng(1)
  samples = [np.sort(rng.integers(0, N, N)) for _ in range(3)]
  counts = np.stack([np.bincount(s, minlength=N) for s in samples])
  got = evaluation.draw_scores(models, data, method, counts)
  for b, idx in enumerate(samples):
    want = rsatoolbox.rdm.compare(
      RDMs(models).subsample_pattern('index', idx),
      RDMs(data).subsample_pattern('index', idx),
      method,
    )
    # Weighted float32 statistics on the device: within 1e-6 (ties too).
    np.testing.assert_allclose(got[b], want, atol=1e-6, err_msg=method)


def test_cka_draws_expand_the_resampled_square():
  models, data = _data(k=2)
  counts = np.bincount(np.random.default_rng(2).integers(0, N, N), minlength=N)
  idx = np.repeat(np.arange(N), counts)
  got = evaluation.draw_scores(models, data, 'cka', counts[None])[0]
  from scipy.spatial.distance import squareform

  def resampled(v):  # copies of one image at distance 0
    return squareform(v)[np.ix_(idx, idx)]

  want = compare.compare_rdms(
    [resampled(v) for v in models], [resampled(v) for v in data], 'cka'
  )
  np.testing.assert_allclose(got, want, atol=1e-12)


def _rsa_evaluations(result):
  ev = result.evaluations
  while ev.ndim > 2:
    ev = np.nanmean(ev, -1)
  return ev


@pytest.mark.parametrize('over', ['images', 'subjects'])
def test_intervals_as_rsatoolbox_bootstraps(over):
  from rsatoolbox.inference import eval_bootstrap_pattern, eval_bootstrap_rdm
  from rsatoolbox.model import ModelFixed

  models, data = _data(k=6)
  b = 400
  got = evaluation.compare_models(models, data, 'spearman', over, n_boot=b)
  ms = [ModelFixed(f'm{k}', RDMs(v[None])) for k, v in enumerate(models)]
  np.random.seed(0)
  run = eval_bootstrap_pattern if over == 'images' else eval_bootstrap_rdm
  ref = _rsa_evaluations(run(ms, RDMs(data), method='spearman', N=b))
  value = rsatoolbox.rdm.compare(RDMs(models), RDMs(data), 'spearman').mean(1)
  for k in range(3):
    s = got['scores'][k]
    assert s['value'] == pytest.approx(value[k], abs=1e-12)
    ratio = s['sd'] / np.nanstd(ref[:, k], ddof=1)
    assert 0.8 < ratio < 1.25, (k, ratio)
    assert s['low'] < s['value'] < s['high']
  nc = group.noise_ceiling(data)
  assert got['noise_ceiling']['lower']['value'] == nc['lower']
  assert got['noise_ceiling']['upper']['value'] == nc['upper']


def test_subject_draws_are_means_of_drawn_subjects():
  models, data = _data(k=4)
  got = evaluation.compare_models(
    models, data, 'corr', 'subjects', n_boot=50, seed=3
  )
  u = inference.bootstrap_counts(4, 50, 4)  # seed + 1
  per = compare.compare_rdms(models, data, 'corr')
  np.testing.assert_allclose(got['per_subject'], per, atol=1e-12)
  for k in range(3):
    np.testing.assert_allclose(
      got['scores'][k]['samples'], u @ per[k] / 4, atol=1e-12
    )


def test_dual_bootstrap_corrects_the_variance():
  models, data = _data(k=5)
  b = 200
  both = evaluation.compare_models(models, data, 'spearman', 'both', n_boot=b)
  img = evaluation.compare_models(models, data, 'spearman', 'images', n_boot=b)
  subj = evaluation.compare_models(
    models, data, 'spearman', 'subjects', n_boot=b
  )
  for k in range(3):
    raw = np.var(both['scores'][k]['samples'], ddof=1)
    v_s = np.var(subj['scores'][k]['samples'], ddof=1)
    v_i = np.var(img['scores'][k]['samples'], ddof=1)
    want = evaluation._dual_variance(raw, v_s, v_i, 5, N)
    assert both['scores'][k]['sd'] == pytest.approx(np.sqrt(want), rel=1e-9)
    assert np.sqrt(v_i * N / (N - 1)) <= both['scores'][k]['sd'] + 1e-12
    assert both['scores'][k]['sd'] <= np.sqrt(raw) + 1e-12
  assert both['dof'] == 4


def test_differences_are_paired_and_tested():
  models, data = _data(k=5)
  got = evaluation.compare_models(
    {'close': models[0], 'far': models[1], 'cat': models[2]},
    data,
    'spearman',
    n_boot=200,
  )
  assert got['models'] == ['close', 'far', 'cat']
  first = got['differences'][0]
  assert (first['a'], first['b']) == ('close', 'far')
  s = got['scores']
  np.testing.assert_allclose(
    first['samples'], s['close']['samples'] - s['far']['samples'], atol=1e-12
  )
  assert first['value'] == pytest.approx(
    s['close']['value'] - s['far']['value']
  )
  p = got['diff_p']
  assert np.allclose(p, p.T, equal_nan=True) and np.isnan(np.diag(p)).all()
  assert p[0, 1] < 0.01  # the close model is better
  assert s['close']['p_zero'] < 0.01
  assert 0 <= s['far']['p_below_ceiling'] <= 1


def test_missing_pairs_and_bad_input():
  models, data = _data(k=3)
  gone = np.random.default_rng(5).choice(data.shape[1], 20, replace=False)
  m2, d2 = models.copy(), data.copy()
  m2[:, gone] = np.nan
  d2[:, gone] = np.nan
  got = evaluation.compare_models(m2, d2, 'spearman', n_boot=20)
  keep = np.setdiff1d(np.arange(data.shape[1]), gone)
  want = compare.compare_rdms(models[:, keep], data[:, keep]).mean(1)
  for k in range(3):
    assert got['scores'][k]['value'] == pytest.approx(want[k], abs=1e-12)
  assert got['n_pairs'] == {s: keep.size for s in range(3)}
  d3 = d2.copy()
  d3[0, np.flatnonzero(np.isfinite(d3[0]))[0]] = np.nan
  with pytest.raises(InputError, match='different pairs'):
    evaluation.compare_models(m2, d3, n_boot=20)
  assert evaluation.compare_models(m2, d3, n_boot=20, nan='drop_union')
  with pytest.raises(InputError, match='over='):
    evaluation.compare_models(models, data, over='runs')
  with pytest.raises(InputError, match='needs 2'):
    evaluation.compare_models(models, data[:1], over='subjects')
  with pytest.raises(InputError, match='same images'):
    evaluation.compare_models(models[:, :-1], data)
  one = evaluation.compare_models(models, data[:1], n_boot=20)
  assert one['noise_ceiling'] is None
