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
      # Several at once share one float64 product of another shape: equal
      # to its rounding (~m * eps for m = 1770 entries; BLAS kernels vary).
      assert many[name][m] == pytest.approx(one, abs=1e-12), (name, m)
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


# Anyone's RDMs (issue 22): missing pairs, several at once, rsatoolbox's
# names, float64 precision. References: scipy and rsatoolbox in float64.

rsa_rdm = importlib.import_module('rsatoolbox.rdm')


def _rsa(a, b, method):
  """rsatoolbox's compare of [k, m] (or [m]) float64 vectors."""
  wrap = lambda v: rsa_rdm.RDMs(np.atleast_2d(np.asarray(v, np.float64)))  # noqa: E731
  return rsa_rdm.compare(wrap(a), wrap(b), method)


RSA_NAMES = {
  'spearman': 'spearman',
  'pearson': 'corr',
  'kendall_tau_a': 'tau-a',
  'kendall_tau_b': 'tau-b',
  'spearman_rho_a': 'rho-a',
  'cosine': 'cosine',
}


def _with_nan(m=4186, k=1, seed=0, ties=False):
  """k RDM vectors [k, m] with NaN at the same random positions."""
  rng = np.random.default_rng(seed)
  v = rng.random((k, m)) + rng.random(m)
  if ties:
    v = np.round(v * 4) / 4
  v[:, rng.choice(m, m // 20, replace=False)] = np.nan
  return v


def test_the_kendall_nan_report_reproduces_scipy():
  rng = np.random.default_rng(0)
  a = rng.random(4186)
  b = a + rng.random(4186)
  a[0] = b[0] = np.nan
  want = stats.kendalltau(a[1:], b[1:])[0]
  assert compare.compare_rdms(a, b, 'kendall_tau_b') == pytest.approx(
    want, abs=1e-15
  )
  assert compare.compare_rdms(a, b, 'kendall_tau_a') == pytest.approx(
    _rsa(a, b, 'tau-a')[0, 0], abs=1e-15
  )


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('method', sorted(RSA_NAMES))
def test_missing_pairs_left_out_in_every_measure_as_rsatoolbox(method, ties):
  a = _with_nan(seed=1, ties=ties)[0]
  b = a + np.random.default_rng(3).random(a.size)  # NaN where a is
  if ties:
    b = np.round(b * 4) / 4
  got = compare.compare_rdms(a, b, method)
  assert np.isfinite(got)
  assert got == pytest.approx(_rsa(a, b, RSA_NAMES[method])[0, 0], abs=1e-13)
  keep = ~np.isnan(a)
  scipy_ref = {
    'spearman': lambda x, y: stats.spearmanr(x, y)[0],
    'pearson': lambda x, y: stats.pearsonr(x, y)[0],
    'kendall_tau_b': lambda x, y: stats.kendalltau(x, y)[0],
  }
  if method in scipy_ref:
    want = scipy_ref[method](a[keep], b[keep])
    assert got == pytest.approx(want, abs=1e-13)
  # The same as comparing the measured pairs alone.
  assert got == pytest.approx(
    compare.compare_rdms(a[keep], b[keep], method), abs=1e-15
  )


def test_missing_pairs_at_different_positions():
  a, b = _with_nan(seed=1)[0], _with_nan(seed=5)[0]
  with pytest.raises(InputError, match='different pairs.*drop_union'):
    compare.compare_rdms(a, b)
  both = ~np.isnan(a) & ~np.isnan(b)
  for method in RSA_NAMES:
    got = compare.compare_rdms(a, b, method, nan='drop_union')
    assert got == pytest.approx(
      _rsa(a[both], b[both], RSA_NAMES[method])[0, 0], abs=1e-13
    )
  with pytest.raises(InputError, match='nan='):
    compare.compare_rdms(a, b, nan='ignore')
  inf = a.copy()
  inf[np.flatnonzero(np.isfinite(a))[0]] = np.inf
  with pytest.raises(InputError, match='inf at 1 pairs'):
    compare.compare_rdms(inf, a)
  sq = squareform(np.nan_to_num(a[:4095]))
  sq[0, 1] = sq[1, 0] = np.nan
  with pytest.raises(InputError, match='cka needs every pair'):
    compare.compare_rdms(sq, sq, 'cka')
  with pytest.raises(InputError, match='at least 2'):
    compare.compare_rdms([np.nan, np.nan, 1.0], [np.nan, np.nan, 2.0])


def test_several_rdms_at_once_as_rsatoolbox():
  """list, [k, n, n] stack, [k, m] stack, dict and rsatoolbox RDMs: the
  [k_a, k_b] matrix of rsatoolbox's compare."""
  rng = np.random.default_rng(4)
  n = 40
  x = rng.standard_normal((5, n, 8))
  sq = np.stack([squareform(pdist(v, 'correlation')) for v in x])  # [5, n, n]
  vec = np.stack([squareform(s, checks=False) for s in sq])  # [5, m]
  models, data = vec[:2], vec[2:]
  for method, name in RSA_NAMES.items():
    want = _rsa(models, data, name)
    for a, b in (
      (models, data),  # condensed stacks
      (sq[:2], sq[2:]),  # square stacks
      (list(sq[:2]), list(vec[2:])),  # lists, square and condensed
      ({'m0': sq[0], 'm1': vec[1]}, dict(enumerate(data))),
      (rsa_rdm.RDMs(models), rsa_rdm.RDMs(data)),
    ):
      got = compare.compare_rdms(a, b, method)
      assert got.shape == (2, 3)
      np.testing.assert_allclose(got, want, atol=1e-13, err_msg=method)
  one = compare.compare_rdms(sq[0], data)
  assert one.shape == (1, 3)
  assert isinstance(compare.compare_rdms(sq[0], sq[1]), float)
  named = compare.compare_many(
    sq[0], {'s1': sq[1], 's2': sq[2]}, ('corr', 'tau-a')
  )
  assert named['s2']['corr'] == pytest.approx(
    _rsa(vec[0], vec[2], 'corr')[0, 0]
  )
  assert list(compare.compare_many(sq[0], list(sq[1:3]))) == [0, 1]
  # Malformed inputs: one line naming them.
  with pytest.raises(InputError, match='differ in size'):
    compare.compare_rdms([vec[0], vec[0][:-1]], vec[1])
  with pytest.raises(InputError, match=r'RDM b\[1\]: shape \(3, 4\)'):
    compare.compare_rdms(vec[0], [vec[1], np.zeros((3, 4))])
  with pytest.raises(InputError, match='shape'):
    compare.compare_rdms(np.zeros((2, 3, 4)), vec[1])
  with pytest.raises(InputError, match='none given'):
    compare.compare_rdms([], vec[1])
  with pytest.raises(InputError, match='RDM sizes differ'):
    compare.compare_rdms(vec[0], vec[1][:-1])


def test_missing_pairs_in_several_rdms():
  """Subjects missing the same pairs share one product; others, with
  drop_union, each pair of RDMs on the pairs both have."""
  v = _with_nan(k=3, seed=6)
  other = v[0].copy()
  other[np.flatnonzero(np.isfinite(other))[:7]] = np.nan
  got = compare.compare_rdms(v, [v[1], other], 'spearman', nan='drop_union')
  for i in range(3):
    for j, b in enumerate([v[1], other]):
      both = np.isfinite(v[i]) & np.isfinite(b)
      want = stats.spearmanr(v[i][both], b[both])[0]
      assert got[i, j] == pytest.approx(want, abs=1e-13)
  np.testing.assert_allclose(
    compare.compare_rdms(v, v, 'rho-a'), _rsa(v, v, 'rho-a'), atol=1e-13
  )


def test_rsatoolbox_names_are_aliases():
  a, b = _vectors(ties=True)
  for alias, name in compare.METHOD_ALIASES.items():
    assert compare.method_name(alias) == name
    if name != 'cka':
      assert compare.compare_rdms(a, b, alias) == compare.compare_rdms(
        a, b, name
      )
  for name in compare.ALL_METHODS:
    assert compare.method_name(name) == name
  with pytest.raises(InputError, match="'tau-c' unknown.*'corr'"):
    compare.method_name('tau-c')


def test_float64_rdms_are_ranked_in_float64():
  """Values closer than a float32 ulp stay distinct (no false ties)."""
  rng = np.random.default_rng(8)
  a = 1 + rng.random(3000) * 1e-6  # float32 would tie most of these
  b = a + rng.standard_normal(3000) * 1e-7
  assert np.unique(a.astype(np.float32)).size < 100
  got = compare.compare_rdms(a, b, 'spearman')
  assert got == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-14)
  tau_a = compare.compare_rdms(a, b, 'tau-a')
  assert tau_a == pytest.approx(_rsa(a, b, 'tau-a')[0, 0], abs=1e-15)
  # float32 input keeps its own (tied) values, as before.
  f32 = compare.compare_rdms(a.astype(np.float32), b.astype(np.float32))
  assert abs(f32 - got) > 1e-3


def test_a_small_comparison_compiles_nothing():
  from compiled import programs

  rng = np.random.default_rng(9)
  a, b = rng.random((92, 92)), rng.random((2, 92, 92))
  with programs() as made:
    for method in compare.ALL_METHODS:
      compare.compare_rdms(a, b, method)
  assert made == []
