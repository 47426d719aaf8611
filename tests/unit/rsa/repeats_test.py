"""Repeat counts and the repeat-count bias of RDMs, against brute force."""

import compiled
import jax
import numpy as np
import pytest
from scipy import stats
from scipy.io import savemat
from scipy.spatial.distance import pdist, squareform

from rdmjax import config_lib, data
from rdmjax.data import inputs  # noqa: E402
from rdmjax.errors import InputError
from rdmjax.rsa import repeats


def _noisy(seed=0, n=80, v=200):
  """Means of 1 to 3 noisy trials of random signals: more repeats, less
  noise."""
  rng = np.random.default_rng(seed)
  c = rng.integers(1, 4, n)
  mu = rng.normal(size=(n, v))
  x = mu + rng.normal(size=(n, v)) * 2.0 / np.sqrt(c)[:, None]
  return x, c


def test_noise_slope_is_least_squares_over_pairs():
  x, c = _noisy()
  d2 = squareform(pdist(x, 'sqeuclidean'))
  i, j = np.triu_indices(len(c), 1)
  u = 1 / c[i] + 1 / c[j]
  want = np.polyfit(u, d2[i, j], 1)[0]
  assert repeats.noise_slope(d2.sum(1), c) == pytest.approx(want, rel=1e-9)
  # The generator's noise: 4 per vertex per trial, 200 vertices.
  assert repeats.noise_slope(d2.sum(1), c) == pytest.approx(800, rel=0.15)


@pytest.mark.parametrize('metric', ['euclidean', 'sqeuclidean', 'correlation'])
def test_bias_equals_brute_force(metric):
  x, c = _noisy(1)
  r = squareform(pdist(x, metric))
  n = len(c)
  got = repeats.bias(r.astype(np.float32), c, metric)
  means = r.sum(1) / (n - 1)
  assert got['spearman'] == pytest.approx(
    stats.spearmanr(means, c).statistic, abs=1e-6
  )
  for key, val in got['by_count'].items():
    a, b = (int(k) for k in key.split('-'))
    mask = (c[:, None] == a) & (c[None, :] == b)
    mask |= (c[:, None] == b) & (c[None, :] == a)
    np.fill_diagonal(mask, False)
    assert val == pytest.approx(r[mask].mean(), rel=1e-5)
  if metric == 'correlation':
    assert 'spearman_corrected' not in got
    return
  d2 = r**2 if metric == 'euclidean' else r
  s = repeats.noise_slope(d2.sum(1), c)
  fixed = d2 - s * (1 / c[:, None] + 1 / c[None, :])
  np.fill_diagonal(fixed, 0)
  want = stats.spearmanr(fixed.sum(1) / (n - 1), c).statistic
  assert got['spearman_corrected'] == pytest.approx(want, abs=1e-5)
  # Euclidean distances rank noise levels; the correction removes it.
  assert got['spearman'] < -0.5 and abs(got['spearman_corrected']) < 0.3


def test_equal_repeats_keeps_the_most_common_count():
  c = np.array([1, 2, 2, 3, 2, 1])
  np.testing.assert_array_equal(repeats.equal_repeats(c), [1, 2, 4])


def test_counts_from_nsd_design_file(tmp_path):
  """Trials of the first N - 3 sessions, per training image (1-based ids
  in the design file, 0-based in file names)."""
  rng = np.random.default_rng(0)
  subjectim = np.zeros((8, 10000), np.int64)
  subjectim[1] = rng.permutation(73000)[:10000] + 1  # subj02
  order = rng.integers(1, 10001, 30000)
  savemat(tmp_path / 'd.mat', {'masterordering': order, 'subjectim': subjectim})
  n_train = (40 - 3) * 750
  seen = subjectim[1][order[:n_train] - 1] - 1
  ids = np.unique(seen)[:50]
  want = np.array([(seen == k).sum() for k in ids])
  got = repeats.from_expdesign(tmp_path / 'd.mat', 'subj02', ids)
  np.testing.assert_array_equal(got, want)
  with pytest.raises(InputError, match='never appear'):
    repeats.from_expdesign(tmp_path / 'd.mat', 'subj02', np.array([-5]))


def test_synthetic_subject_carries_its_counts(tmp_path):
  c = config_lib.load_sibling('configs/x.py', 'default', 'tiny')
  subject = data.subject_from_config(c, tmp_path)
  got = inputs.repeat_counts(c, subject, tmp_path)
  assert got.shape == (subject.n_images('train'),)
  assert set(np.unique(got)) <= {1, 2, 3} and len(np.unique(got)) > 1
  np.save(tmp_path / 'r.npy', got[:-1])
  with c.unlocked():
    c.data.repeats = str(tmp_path / 'r.npy')
  with pytest.raises(InputError, match='one count'):
    inputs.repeat_counts(c, subject, tmp_path)


def test_rdm_stage_reports_bias_and_restricts_to_equal_repeats(tmp_path):
  from rdmjax.stages import rdm

  c = config_lib.load_sibling('configs/x.py', 'default', 'tiny')
  with c.unlocked():
    c.rdm.rois = ('V1',)
    c.rdm.bootstrap = 20
    c.rdm.permutations = 20
  res = rdm.run(c, tmp_path)
  b = res['rois']['V1']['metrics']['euclidean']['repeats']
  assert b['spearman'] < -0.3 and abs(b['spearman_corrected']) < 0.3
  assert 'Repeat-count bias' in (tmp_path / 'report.md').read_text()
  counts = res['repeat_counts']
  with c.unlocked():
    c.rdm.images = 'equal_repeats'
  res = rdm.run(c, tmp_path)
  assert res['n_images'] == max(counts.values())
  assert res['rois']['V1']['metrics']['euclidean']['repeats'] is None


def test_bias_compiles_one_program_for_every_metric():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((41, 9))  # a size no other test uses
  c = rng.integers(1, 4, 41)
  with compiled.programs() as made:
    for metric in ('correlation', 'euclidean', 'sqeuclidean'):
      r = squareform(pdist(x, metric)).astype(np.float32)
      repeats.bias(jax.device_put(r), c, metric)
  assert made == ['jit(_sums)']
