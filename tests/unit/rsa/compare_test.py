"""rdmjax.rsa.compare's rho-a, tau-b, cosine and CKA, and rdmjax.rsa.mds, against
rsatoolbox, scipy and float64 numpy brute force (issue 12).

Inputs hold float32-representable values (the values every method sees), so
the references compare the same numbers and the same ties.
"""

import importlib

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import procrustes
from scipy.spatial.distance import pdist, squareform

from rdmjax.errors import InputError
from rdmjax.report import mds as mds_plot
from rdmjax.rsa import compare, mds

rsa = importlib.import_module('rsatoolbox.rdm.compare')
M = 3000  # not n(n-1)/2: the vector methods take any [m]


def _f32(v):
  return np.asarray(v, np.float32).astype(np.float64)


def _vectors(m=M, ties=False, seed=1):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal(m)
  b = a + 1.5 * rng.standard_normal(m)
  if ties:  # ~40 levels each, many joint ties
    a, b = np.round(a * 8) / 8, np.round(b * 4) / 4
  return _f32(a), _f32(b)


def _rho_a_brute(a, b):
  m = a.shape[0]
  ra, rb = stats.rankdata(a), stats.rankdata(b)
  return 12 * np.dot(ra - ra.mean(), rb - rb.mean()) / (m**3 - m)


@pytest.mark.parametrize('host', [True, False])
@pytest.mark.parametrize('ties', [False, True])
def test_rho_a_vs_rsatoolbox(ties, host, monkeypatch):
  """Both rank paths: scipy ranks on the host, exact int32 on the device."""
  monkeypatch.setattr(compare, '_host_ranking', lambda: host)
  monkeypatch.setattr(compare, '_DEVICE_MIN', 0)  # the device path at M
  a, b = _vectors(ties=ties)
  got = compare.compare_rdms(a, b, 'spearman_rho_a')
  assert got == pytest.approx(rsa.compare_rho_a(a, b)[0, 0], abs=1e-12)
  assert got == pytest.approx(_rho_a_brute(a, b), abs=1e-12)
  spearman = stats.spearmanr(a, b)[0]
  if not ties:
    assert got == pytest.approx(spearman, abs=1e-12)
  else:  # below Spearman, and not 1 - 6 sum(d^2) / (m^3 - m) either
    assert got < spearman - 1e-4
    d = stats.rankdata(a) - stats.rankdata(b)
    assert abs(got - (1 - 6 * np.dot(d, d) / (M**3 - M))) > 1e-4


@pytest.mark.parametrize('ties', [False, True])
def test_tau_b_vs_scipy_and_rsatoolbox(ties):
  a, b = _vectors(ties=ties)
  got = compare.compare_rdms(a, b, 'kendall_tau_b')
  want = stats.kendalltau(a, b).statistic  # variant 'b'
  assert got == pytest.approx(want, abs=1e-12)
  assert got == pytest.approx(rsa.compare_kendall_tau(a, b)[0, 0], abs=1e-12)
  tau_a = compare.compare_rdms(a, b, 'kendall_tau_a')
  if ties:  # tie correction: |tau-b| > |tau-a|
    assert got > tau_a + 1e-3
  else:
    assert got == pytest.approx(tau_a, abs=1e-15)


def test_tau_b_constant_is_nan_as_scipy():
  a, b = _vectors(m=50)
  assert np.isnan(compare.compare_rdms(np.ones(50), b, 'kendall_tau_b'))
  assert np.isnan(stats.kendalltau(np.ones(50), b).statistic)
  # One tie-free and one two-level vector: defined, as scipy.
  two = (a > 0).astype(np.float64)
  assert compare.compare_rdms(two, b, 'kendall_tau_b') == pytest.approx(
    stats.kendalltau(two, b).statistic, abs=1e-12
  )


@pytest.mark.parametrize('ties', [False, True])
def test_cosine_vs_rsatoolbox(ties, monkeypatch):
  monkeypatch.setattr(compare, '_CHUNK', 777)  # several float64 chunks
  a, b = _vectors(ties=ties)
  got = compare.compare_rdms(a, b, 'cosine')
  assert got == pytest.approx(rsa.compare_cosine(a, b)[0, 0], abs=1e-12)
  want = np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
  assert got == pytest.approx(want, abs=1e-12)
  # An all-zero RDM: 0, as rsatoolbox's _cosine.
  assert compare.compare_rdms(np.zeros(M), b, 'cosine') == 0.0
  assert rsa.compare_cosine(np.zeros(M), b)[0, 0] == 0.0


def _cka_brute(a, b):
  """Float64 n x n: <G_a, G_b> / (|G_a| |G_b|), G = -1/2 H D H."""
  a, b = squareform(a), squareform(b)
  n = a.shape[0]
  h = np.eye(n) - np.ones((n, n)) / n
  ga, gb = -0.5 * h @ a @ h, -0.5 * h @ b @ h
  return np.sum(ga * gb) / (np.linalg.norm(ga) * np.linalg.norm(gb))


def _linear_cka(x, y):
  """|Y^T X|_F^2 / (|X^T X|_F |Y^T Y|_F) of column-centred features."""
  x, y = x - x.mean(0), y - y.mean(0)
  return np.linalg.norm(y.T @ x) ** 2 / (
    np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
  )


@pytest.mark.parametrize('chunk', [compare._CHUNK, 37])
def test_cka_vs_brute_force(chunk, monkeypatch):
  """Non-Euclidean RDMs with ties; 37: chunks of a row or two."""
  monkeypatch.setattr(compare, '_CHUNK', chunk)
  n = 41
  a, b = _vectors(m=n * (n - 1) // 2, ties=True, seed=3)
  a, b = np.abs(a), np.abs(b)
  got = compare.compare_rdms(a, b, 'cka')
  assert got == pytest.approx(_cka_brute(a, b), abs=1e-12)
  assert got == compare.compare_rdms(squareform(a), squareform(b), 'cka')
  assert compare.compare_rdms(a, a, 'cka') == pytest.approx(1, abs=1e-15)


def test_cka_is_linear_cka_of_the_features():
  rng = np.random.default_rng(0)
  # Integer features: squared distances are exact in float32.
  x = rng.integers(-5, 6, (30, 3)).astype(np.float64)
  y = x @ rng.integers(-2, 3, (3, 5)) + rng.integers(-3, 4, (30, 5))
  a, b = pdist(x, 'sqeuclidean'), pdist(y, 'sqeuclidean')
  got = compare.compare_rdms(a, b, 'cka')
  assert got == pytest.approx(_linear_cka(x, y), abs=1e-12)
  # Real features through float32 RDMs.
  x, y = rng.standard_normal((60, 20)), rng.standard_normal((60, 8))
  y[:, :4] += x[:, :4]
  got = compare.compare_rdms(
    pdist(x, 'sqeuclidean'), pdist(y, 'sqeuclidean'), 'cka'
  )
  assert got == pytest.approx(_linear_cka(x, y), abs=1e-6)
  # A correlation RDM is half the squared distance of z-scored unit rows.
  z = [(v - v.mean(1, keepdims=True)) for v in (x, y)]
  z = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in z]
  got = compare.compare_rdms(
    pdist(x, 'correlation'), pdist(y, 'correlation'), 'cka'
  )
  assert got == pytest.approx(_linear_cka(*z), abs=1e-6)


def test_cka_needs_an_upper_triangle():
  a, b = _vectors()
  with pytest.raises(InputError, match='upper triangle'):
    compare.compare_rdms(a, b, 'cka')


def test_row_chunks_cover_the_upper_triangle(monkeypatch):
  monkeypatch.setattr(compare, '_CHUNK', 10)
  n = 13
  chunks = list(compare._row_chunks(n))
  assert len(chunks) > 3
  assert [c[0] for c in chunks[1:]] == [c[1] for c in chunks[:-1]]
  i = np.concatenate([c[2] for c in chunks])
  j = np.concatenate([c[3] for c in chunks])
  iu = np.triu_indices(n, 1)
  np.testing.assert_array_equal(i, iu[0])
  np.testing.assert_array_equal(j, iu[1])
  assert chunks[-1][1] == n * (n - 1) // 2


def test_all_methods_many_equal_single_and_square_equals_condensed():
  rng = np.random.default_rng(7)
  x = rng.standard_normal((60, 5))
  ra, rb = (squareform(pdist(v)) for v in (x, x + rng.standard_normal(x.shape)))
  rc = np.round(rb)  # ties
  many = compare.compare_many(ra, {'b': rb, 'c': rc}, compare.ALL_METHODS)
  for name, other in (('b', rb), ('c', rc)):
    assert set(many[name]) == set(compare.ALL_METHODS)
    for m in compare.ALL_METHODS:
      one = compare.compare_rdms(ra, other, m)
      # Several at once share one float64 product: equal to rounding.
      assert many[name][m] == pytest.approx(one, abs=1e-15), (name, m)
      assert one == compare.compare_rdms(squareform(ra), squareform(other), m)
  assert set(compare.COMPARE_METHODS) >= {
    'spearman_rho_a',
    'kendall_tau_b',
    'cosine',
  }
  with pytest.raises(InputError, match='unknown'):
    compare.compare_many(ra, {'b': rb}, ('cka', 'tau_c'))


# MDS


def _points(n=30, seed=0):
  return np.random.default_rng(seed).standard_normal((n, 2)) * [3.0, 1.0]


def test_mds_recovers_points():
  p = _points()
  for rdm in (squareform(pdist(p)), pdist(p)):
    y = mds.mds(rdm, dim=2)
    assert y.shape == (30, 2)
    assert procrustes(p, y)[2] < 1e-8
    np.testing.assert_allclose(pdist(y), pdist(p), rtol=1e-10)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)


def _mds_brute(d, dim):
  n = d.shape[0]
  j = np.eye(n) - np.ones((n, n)) / n
  w, v = np.linalg.eigh(-0.5 * j @ (d**2) @ j)
  w, v = w[::-1][:dim], v[:, ::-1][:, :dim]
  return v * np.sqrt(np.maximum(w, 0))


def _same_up_to_signs(x, y, tol):
  signs = np.sign(np.sum(x * y, 0))
  np.testing.assert_allclose(x, y * signs, atol=tol)


def test_mds_equals_numpy_brute_force_and_lanczos(monkeypatch):
  """A non-Euclidean RDM (negative eigenvalues too) in 3-D."""
  rng = np.random.default_rng(2)
  d = squareform(rng.uniform(0.5, 2.0, 40 * 39 // 2))
  got = mds.mds(d, dim=3)
  _same_up_to_signs(got, _mds_brute(d, 3), 1e-10)
  big = np.argmax(np.abs(got), 0)
  assert np.all(got[big, np.arange(3)] > 0)
  monkeypatch.setattr(mds, '_DENSE_MAX', 10)
  np.testing.assert_allclose(mds.mds(d, dim=3, seed=5), got, atol=1e-8)
  # All negative eigenvalues asked for: zero coordinates there.
  full = mds.mds(d, dim=40)
  assert np.all(full[:, -1] == 0)
  with pytest.raises(InputError, match='dim'):
    mds.mds(d, dim=41)
  with pytest.raises(InputError, match='upper triangle'):
    mds.mds(np.ones(7))


def test_mds_figure_writes_png(tmp_path):
  p = _points(n=60)
  y = mds.mds(pdist(p))
  labels = np.array(['animal', 'vehicle', 'food'])[np.arange(60) % 3]
  out = mds_plot.mds_figure(y, labels, path=tmp_path / 'mds.png')
  assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  out = mds_plot.mds_figure(y, path=tmp_path / 'plain.png', title='no labels')
  assert out.read_bytes()[:4] == b'\x89PNG'
  out = mds_plot.mds_figure(
    y[:, :1], list(range(60)), path=tmp_path / 'many.png'
  )
  assert out.is_file()
  with pytest.raises(InputError, match='labels'):
    mds_plot.mds_figure(y, labels[:5], path=tmp_path / 'bad.png')
