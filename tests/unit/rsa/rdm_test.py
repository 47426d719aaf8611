"""rdmjax.rsa.rdm against float64 numpy / scipy / rsatoolbox references.

Error measure for RDMs: max |D - D_ref| / max |D_ref| over the off-diagonal
entries (norm-wise; per-entry relative error is unbounded where D_ref ~ 0).
"""

import importlib

import chex
import compiled
import jax
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist, squareform

from rdmjax.errors import InputError
from rdmjax.rsa import compare
from rdmjax.rsa import rdm as rdm_lib
from rdmjax.rsa import summary as streaming

N, D, TILE = 200, 300, 64  # n > tile and not a multiple of it


def _x(n=N, d=D, seed=0, offset=3.0):
  rng = np.random.default_rng(seed)
  # Low-rank signal plus noise and a common offset, like voxel responses.
  base = rng.standard_normal((n, 8)) @ rng.standard_normal((8, d))
  return base + rng.standard_normal((n, d)) + offset


def _err(r, ref):
  iu = np.triu_indices(ref.shape[0], 1)
  return (
    np.abs(np.asarray(r, np.float64) - ref)[iu].max() / np.abs(ref[iu]).max()
  )


# Measured here (CPU) at N x D above; bounds leave ~4x headroom. cosine sits
# higher: without centring its 1 - cos cancels (values ~0.1 here).
F32_TOL = {'correlation': 1e-6, 'euclidean': 1e-6, 'sqeuclidean': 1e-6}
F32_TOL['cosine'] = 2e-5


@pytest.mark.parametrize('metric', rdm_lib.METRICS)
@pytest.mark.parametrize('tile', [None, TILE])
def test_rdm_matches_scipy_pdist(metric, tile):
  x = _x()
  r = np.asarray(rdm_lib.rdm(x, metric, tile=tile))
  assert r.shape == (N, N) and r.dtype == np.float32
  assert _err(r, squareform(pdist(x, metric))) < F32_TOL[metric]
  np.testing.assert_array_equal(r, r.T)
  np.testing.assert_array_equal(np.diag(r), 0)


@pytest.mark.parametrize('metric', rdm_lib.METRICS)
def test_host_blas_and_xla_paths_agree(metric):
  x = _x()
  ref = squareform(pdist(x, metric))
  for impl in ('blas', 'xla'):
    r = np.asarray(rdm_lib.rdm(x, metric, impl=impl))
    assert _err(r, ref) < F32_TOL[metric], impl
    np.testing.assert_array_equal(r, r.T)
    np.testing.assert_array_equal(np.diag(r), 0)


def test_correlation_matches_corrcoef_and_rsatoolbox():
  x = _x()
  r = np.asarray(rdm_lib.rdm(x, 'correlation', tile=TILE))
  assert _err(r, 1 - np.corrcoef(x)) < 1e-6
  rsa = pytest.importorskip('rsatoolbox')
  ds = rsa.data.Dataset(x)
  ref = rsa.rdm.calc_rdm(ds, method='correlation').get_matrices()[0]
  assert _err(r, ref) < 1e-6
  # rsatoolbox's euclidean is squared and divided by the channel count.
  ref = rsa.rdm.calc_rdm(ds, method='euclidean').get_matrices()[0]
  assert _err(np.asarray(rdm_lib.rdm(x, 'sqeuclidean')) / D, ref) < 1e-6


@pytest.mark.parametrize(
  'precision,tol',
  [('float32', 1e-6), ('tf32', 1e-6), ('bf16_3x', 1e-6), ('bf16', 3e-3)],
)
def test_precisions(precision, tol):
  # On CPU tf32 is float32; the GPU script measures the real TF32 error.
  x = _x()
  r = rdm_lib.rdm(x, 'correlation', precision=precision, tile=TILE)
  assert _err(r, 1 - np.corrcoef(x)) < tol


def test_mesh_equals_single_device():
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ('data',))
  for n in (N, 203):  # divisible by 8 and not
    x = _x(n=n)
    one = np.asarray(rdm_lib.rdm(x, 'correlation'))
    many = rdm_lib.rdm(x, 'correlation', mesh=mesh)
    np.testing.assert_allclose(np.asarray(many), one, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(many), np.asarray(many).T)


@pytest.mark.parametrize('n_dev', [1, 2, 3, 8])
def test_mesh_strips_cover_the_matrix_with_half_the_blocks(n_dev):
  n = 203
  b, rows = rdm_lib.mesh_strips(n, n_dev)
  nb = 2 * n_dev
  assert b * nb >= n and rows.shape == (n_dev, 2)
  assert sorted(rows.reshape(-1)) == list(range(nb))  # each row once
  done = np.zeros((nb, nb), bool)
  for r in range(nb):
    for c in range(n_dev + 1):
      done[r, (r + c) % nb] = True
  assert np.all(done | done.T)  # every block, or its mirror
  # nb (n_dev + 1) blocks computed: the triangle's n_dev (nb + 1) plus the
  # n_dev antipodal ones twice; full row blocks compute nb * nb.
  assert done.sum() == nb * (n_dev + 1) == n_dev * (nb + 1) + n_dev


@pytest.mark.parametrize('metric', ['correlation', 'cosine'])
def test_degenerate_row_names_index(metric):
  x = _x()
  x[17] = 0.0 if metric == 'cosine' else 2.5
  with pytest.raises(InputError, match=r'image index\) 17 '):
    rdm_lib.rdm(x, metric)
  with pytest.raises(InputError, match=r'image index\) 17 '):
    streaming.rdm_stats(x, metric)


def test_bad_arguments():
  with pytest.raises(InputError, match='metric'):
    rdm_lib.rdm(_x(), 'manhattan')
  with pytest.raises(InputError, match='precision'):
    rdm_lib.rdm(_x(), precision='fp8')
  with pytest.raises(InputError, match='shape'):
    rdm_lib.rdm(np.zeros(5))
  with pytest.raises(InputError, match='method'):
    rdm_lib.compare_rdms(np.ones(3), np.ones(3), 'tau_c')


def test_upper_triangle_is_squareform_order():
  r = squareform(pdist(_x(n=13)))
  np.testing.assert_allclose(compare.upper_triangle(r), squareform(r))


def _vectors(m=3000, ties=False, seed=1):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal(m)
  b = a + 1.5 * rng.standard_normal(m)
  return (np.round(a, 1), np.round(b, 1)) if ties else (a, b)


@pytest.mark.parametrize('ties', [False, True])
def test_compare_rdms_vs_scipy_and_rsatoolbox(ties):
  a, b = _vectors(ties=ties)
  got = {m: rdm_lib.compare_rdms(a, b, m) for m in compare.COMPARE_METHODS}
  assert abs(got['spearman'] - stats.spearmanr(a, b)[0]) < 1e-5
  assert abs(got['pearson'] - stats.pearsonr(a, b)[0]) < 1e-5
  if not ties:  # tau-b equals tau-a without ties
    assert abs(got['kendall_tau_a'] - stats.kendalltau(a, b)[0]) < 1e-12
  rsa_compare = importlib.import_module('rsatoolbox.rdm.compare')
  a32, b32 = a.astype(np.float32), b.astype(np.float32)  # same ties as ours
  assert abs(got['kendall_tau_a'] - rsa_compare._tau_a(a32, b32)) < 1e-12


def test_compare_large_magnitudes_do_not_overflow():
  # Ranks of a 3500-image RDM (6e6 entries) have sums of squares ~1.8e19;
  # their product passed the float32 maximum and Spearman came out 0.
  a, b = _vectors()
  for scale in (1e19, 1e-19):
    got = rdm_lib.compare_rdms(a * scale, b * scale, 'pearson')
    assert abs(got - stats.pearsonr(a, b)[0]) < 1e-5


def test_compare_square_equals_condensed():
  x, y = _x(n=60), _x(n=60, seed=5)
  rx, ry = squareform(pdist(x)), squareform(pdist(y))
  for method in compare.COMPARE_METHODS:
    sq = rdm_lib.compare_rdms(rx, ry, method)
    assert sq == rdm_lib.compare_rdms(squareform(rx), squareform(ry), method)
  with pytest.raises(InputError, match='same images'):
    rdm_lib.compare_rdms(rx, ry[:-1, :-1])


def _brute_pairs(ref, order):
  iu = np.triu_indices(ref.shape[0], 1)
  o = order(ref[iu])
  return ref[iu][o], iu[0][o], iu[1][o]


def _clear_target(v, k):
  """A value whose k+1 nearest entries are not near-ties (f32 cannot order)."""
  for q in np.linspace(0.999, 0.9, 100):
    c = float(np.quantile(v, q))
    dist = np.sort(np.abs(v - c))[: k + 1]
    if np.diff(dist).min() > 1e-5 * np.abs(v).max():
      return c
  raise AssertionError('no target without near-ties')


@pytest.mark.parametrize('metric', rdm_lib.METRICS)
def test_rdm_stats_vs_brute_force(metric):
  x, k, c = _x(), 6, None
  ref = squareform(pdist(x, metric))
  c = _clear_target(squareform(ref), k)
  s = streaming.rdm_stats(x, metric, k=k, closest_to=c, tile=TILE, bins=40)
  cases = [
    (s.lowest, lambda v: np.argsort(v)[:k]),
    (s.highest, lambda v: np.argsort(-v)[:k]),
    (s.closest, lambda v: np.argsort(np.abs(v - c))[:k]),
  ]
  for got, order in cases:
    v, i, j = _brute_pairs(ref, order)
    np.testing.assert_allclose(got.values, v, rtol=2e-5)
    np.testing.assert_array_equal(got.i, i)
    np.testing.assert_array_equal(got.j, j)
  # Histogram: the range is the data's, bins as np.histogram on the float32
  # RDM; a value within rounding of an edge may land on either side.
  v = np.asarray(compare.upper_triangle(rdm_lib.rdm(x, metric, tile=TILE)))
  h, edges = np.histogram(
    v, bins=40, range=tuple(map(float, s.hist_edges[[0, -1]]))
  )
  np.testing.assert_array_equal(s.hist_edges, edges)
  near = np.abs(v[:, None] - edges[None, :]) <= 1e-5 * np.abs(v).max()
  assert np.abs(h - s.hist_counts).sum() <= 2 * near.sum()
  assert s.hist_counts.sum() == N * (N - 1) // 2  # range = data range
  assert s.n == N and s.metric == metric


def test_rdm_stats_range_and_no_closest():
  s = streaming.rdm_stats(_x(), 'correlation', k=3, value_range=(0.0, 2.0))
  assert s.closest is None and s.hist_counts.sum() == N * (N - 1) // 2
  np.testing.assert_array_equal(s.hist_edges[[0, -1]], [0.0, 2.0])
  with pytest.raises(InputError, match='k='):
    streaming.rdm_stats(_x(n=4), k=7)


def test_vmap_over_subjects_equals_loop():
  xs = np.stack([_x(n=40, d=50, seed=s) for s in range(3)])
  batched = jax.vmap(lambda x: rdm_lib.rdm(x, 'correlation', tile=16))(xs)
  chex.assert_shape(batched, (3, 40, 40))
  for s in range(3):
    # Batched products may sum in another order: equal to rounding.
    one = rdm_lib.rdm(xs[s], tile=16)
    np.testing.assert_allclose(batched[s], one, rtol=0, atol=1e-6)


def test_no_recompile_for_same_shapes():
  traces = []
  jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: traces.append(name)
  )
  x = _x(n=37, d=20)
  for impl in ('xla', 'auto'):
    rdm_lib.rdm(x, 'euclidean', impl=impl)
  rdm_lib.compare_rdms(x[0], x[1], 'spearman')
  streaming.rdm_stats(x, 'correlation', k=3)
  before = traces.count('/jax/core/compile/jaxpr_trace_duration')
  assert before > 0  # the listener sees traces
  for seed in range(3):
    y = _x(n=37, d=20, seed=seed + 10)
    for impl in ('xla', 'auto'):
      rdm_lib.rdm(y, 'euclidean', impl=impl)
    rdm_lib.compare_rdms(y[0], y[1], 'spearman')
    streaming.rdm_stats(y, 'correlation', k=3)
  assert traces.count('/jax/core/compile/jaxpr_trace_duration') == before


def test_device_rdm_is_one_product_shape_in_a_loop():
  """The XLA path: a scan over the upper tiles, one dot in the program."""
  x = _x(n=N, d=64)
  z, sq, _ = rdm_lib.prepare_rows(x, 'correlation')
  hlo = rdm_lib._rdm_blocks.lower(
    z, sq, metric='correlation', precision='float32', tile=TILE
  ).as_text()
  assert hlo.count('dot_general') == 1
  assert 'while' in hlo or 'scan' in hlo


@pytest.mark.parametrize('metric', ['euclidean', 'sqeuclidean'])
def test_host_euclidean_uses_centred_columns_uncopied(metric):
  x = _x(offset=0.0).astype(np.float32)
  x -= x.mean(0)  # standardised responses are column-centred
  z, sq, _ = rdm_lib._rows_host(x, metric)
  assert np.shares_memory(z, x)  # no copy of a full subject's responses
  r = np.asarray(rdm_lib.rdm(x, metric))
  assert _err(r, squareform(pdist(x.astype(np.float64), metric))) < 1e-6
  offset = x + 3.0  # not centred: centred on a copy, as before
  z, _, _ = rdm_lib._rows_host(offset, metric)
  assert not np.shares_memory(z, offset)


def test_width_bucket():
  for d in (1, 7, 16, 17, 300, 2000, 19004, 39548):
    b = rdm_lib.width_bucket(d)
    assert d <= b <= d * 1.125 + 1, (d, b)
  assert rdm_lib.width_bucket(39548) == 40960
  assert rdm_lib.width_bucket(300) == rdm_lib.width_bucket(290) == 320


@pytest.mark.parametrize('metric', ['correlation', 'euclidean', 'cosine'])
def test_widths_of_one_bucket_share_the_device_programs(metric):
  """Two ROIs of 290 and 300 vertices: zero-padded to 320 columns, one
  compile, the values of each true width (scipy, float64)."""
  mesh = jax.make_mesh((8,), ('data',))
  for fn, kw in (
    (rdm_lib._rdm_xla, {}),
    (rdm_lib.prepare_rows, {'mesh': mesh}),
  ):
    counts = []
    for d in (290, 300):
      x = _x(n=64, d=d, seed=d)
      r = np.asarray(rdm_lib.rdm(x, metric, impl='xla', **kw))
      assert _err(r, squareform(pdist(x, metric))) < F32_TOL[metric]
      np.testing.assert_array_equal(r, r.T)
      counts.append(fn._cache_size())
    assert counts[0] > 0
    assert counts[1] == counts[0], 'the second width compiled again'


def _programs(fn):
  """(fn's result, the names of the XLA programs compiled meanwhile)."""
  with compiled.programs() as made:
    return fn(), made


@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
def test_device_rdm_and_its_mean_are_one_program_each(metric, monkeypatch):
  """The XLA path compiles one program per shape (rows prepared with the
  tiles); `rdm_mean` one more, with the value of the RDM's triangle mean.
  On the host path (small inputs) `rdm_mean` compiles nothing: a float64
  mean of the host's RDM."""
  x = _x(n=53, d=91, seed=5).astype(np.float32)  # shapes no test uses
  host, made = _programs(lambda: rdm_lib.rdm_mean(x, metric))
  assert made == []
  want = compare.upper_triangle(rdm_lib.rdm(x, metric, impl='blas'))
  assert host == pytest.approx(np.mean(np.asarray(want, np.float64)), 1e-12)
  monkeypatch.setattr(rdm_lib, 'AUTO_HOST_MAX_WORK', 0)  # the device path
  r, made = _programs(lambda: rdm_lib.rdm(x, metric, impl='xla'))
  assert made == ['jit(_rdm_xla)']
  m, made = _programs(lambda: rdm_lib.rdm_mean(x, metric))
  assert made == ['jit(_rdm_mean_xla)']
  assert m == compare.upper_mean(r) == float(np.mean(compare.upper_triangle(r)))
  assert m == pytest.approx(host, rel=1e-6)
  bad = x.copy()
  bad[3] = 1.0  # a constant row: still an error
  with pytest.raises(InputError, match='row .*3'):
    rdm_lib.rdm_mean(bad, 'correlation')
  monkeypatch.undo()
  with pytest.raises(InputError, match='row .*3'):
    rdm_lib.rdm_mean(bad, 'correlation')


@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
@pytest.mark.parametrize('devices,block', [(1, 256), (1, 7), (8, 256)])
def test_matrix_stats_equals_rdm_stats(metric, devices, block):
  """One pass over the RDM in memory = the streamed statistics (block 7:
  several row blocks, the last one overlapping the one before)."""
  x, k = _x(), 5
  closest = 1.0 if metric == 'correlation' else None
  mesh = None
  if devices > 1:
    mesh = jax.make_mesh((devices,), ('data',))
  r = rdm_lib.rdm(x, metric, mesh=mesh, tile=TILE if mesh is None else None)
  got, mean, std = streaming.matrix_stats(
    r, k=k, closest_to=closest, bins=40, block=block
  )
  want = streaming.rdm_stats(
    x, metric, k=k, closest_to=closest, bins=40, tile=TILE
  )
  kinds = ['lowest', 'highest'] + (['closest'] if closest else [])
  for kind in kinds:
    g, w = getattr(got, kind), getattr(want, kind)
    np.testing.assert_allclose(g.values, w.values, rtol=2e-5)
    np.testing.assert_array_equal(g.i, w.i)
    np.testing.assert_array_equal(g.j, w.j)
  assert (got.closest is None) == (closest is None)
  # The data's range, to rounding; counts exactly np.histogram's on r.
  np.testing.assert_allclose(got.hist_edges, want.hist_edges, atol=1e-5)
  v32 = np.asarray(r)[np.triu_indices(N, 1)]
  h, _ = np.histogram(v32, bins=got.hist_edges)
  np.testing.assert_array_equal(got.hist_counts, h)
  assert got.hist_counts.sum() == N * (N - 1) // 2
  v = squareform(pdist(x, metric))[np.triu_indices(N, 1)]
  np.testing.assert_allclose([mean, std], [v.mean(), v.std()], rtol=1e-5)


def test_compare_many_ranks_once_and_equals_compare_rdms():
  a, b = _vectors()
  c = b[::-1].copy()
  got = compare.compare_many(a, {'b': b, 'c': c}, compare.COMPARE_METHODS)
  for name, other in (('b', b), ('c', c)):
    for m in compare.COMPARE_METHODS:
      assert got[name][m] == pytest.approx(
        rdm_lib.compare_rdms(a, other, m), abs=1e-7
      )
  with pytest.raises(InputError, match='sizes'):
    compare.compare_many(a, {'short': b[:-1]})


@pytest.mark.parametrize('offset', [0.0, 0.3, 3.0])
@pytest.mark.parametrize('metric', ['correlation', 'cosine'])
def test_host_gram_of_raw_rows_vs_float64(metric, offset):
  """The CPU path centres on the Gram of the raw rows (no copy of x) where
  row means are small, else prepares rows first: both near float64."""
  x = _x(offset=offset).astype(np.float32)
  ref = squareform(pdist(x.astype(np.float64), metric))
  got = np.asarray(rdm_lib.rdm(x, metric, impl='blas'))
  assert _err(got, ref) < F32_TOL[metric]
  np.testing.assert_array_equal(got, got.T)
  np.testing.assert_array_equal(np.diag(got), 0.0)
  raw = rdm_lib._rdm_blas_raw(x, metric)
  small_mean = metric == 'cosine' or offset < 1.0
  assert (raw is None) == (not small_mean)


@pytest.mark.parametrize('ties', [False, True])
def test_device_ranks_agree_with_scipy(ties):
  a, _ = _vectors(ties=ties)
  want = stats.rankdata(a.astype(np.float32))
  device = np.asarray(jax.jit(compare.avg_ranks)(a.astype(np.float32)))
  np.testing.assert_allclose(device, want, rtol=0, atol=0)


def test_auto_impl_takes_the_host_for_small_and_large_inputs(monkeypatch):
  """impl='auto': the host for small inputs on any backend (a compile costs
  more than the work there) and for large ones on a CPU backend (rows,
  Gram work or input bytes), XLA in between; shapes only, nothing
  allocated."""

  def auto(*shape, **kw):
    x = jax.ShapeDtypeStruct(shape, np.float32)
    return rdm_lib._auto_impl(x, **kw)

  # Small (n * n * d <= 2^27, times k for a batch): the host, any backend.
  for backend in ('cpu', 'gpu'):
    monkeypatch.setattr(jax, 'default_backend', lambda b=backend: b)
    assert auto(96, 530) == 'blas'
    assert auto(256, 512) == 'blas'  # reported: xla 1.4 ms, host 0.4-0.6
    assert auto(512, 512) == 'blas'  # the bound, inclusive
    assert auto(12, 8, 530) == 'blas'  # a batch: k * n * n * d
    assert auto(512, 513) == 'xla'
    assert auto(100, 256, 512) == 'xla'
    assert auto(96, 530, precision='bf16') == 'xla'
    assert auto(96, 530, tile=64) == 'xla'
  assert auto(9841, 2000) == 'xla'  # large: the host only on a CPU
  monkeypatch.undo()
  if jax.default_backend() != 'cpu':
    pytest.skip('the large host BLAS path is for a CPU backend')

  assert auto(1024, 2048) == 'xla'
  assert auto(rdm_lib.AUTO_BLAS_MIN_ROWS - 1, 64) == 'xla'
  assert auto(rdm_lib.AUTO_BLAS_MIN_ROWS, 64) == 'blas'  # rows
  assert auto(9841, 2000) == 'blas'  # a full subject's train split
  assert auto(1024, 8192) == 'blas'  # Gram work
  assert auto(16, 1 << 22) == 'blas'  # bytes of x: 256 MiB
  assert auto(3, 2048, 64) == 'blas'  # a batch of large items
  assert auto(9841, 2000, precision='bf16') == 'xla'
  assert auto(9841, 2000, tile=1024) == 'xla'
  mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  assert auto(9841, 2000, mesh=mesh) == 'xla'
  assert auto(64, 40, mesh=mesh) == 'xla'
  assert rdm_lib._auto_impl(np.zeros(5)) == 'xla'  # the shape error's path
  seen = []
  jax.eval_shape(
    lambda x: seen.append(rdm_lib._auto_impl(x)) or x,
    jax.ShapeDtypeStruct((96, 530), np.float32),
  )
  assert seen == ['xla']  # traced

  # rdm(impl='auto') gives exactly the chosen path's values.
  x = _x(n=64, d=40).astype(np.float32)
  for metric in ('correlation', 'euclidean'):
    auto_r = np.asarray(rdm_lib.rdm(x, metric))
    np.testing.assert_array_equal(auto_r, rdm_lib.rdm(x, metric, impl='blas'))
    with monkeypatch.context() as m:
      m.setattr(rdm_lib, 'AUTO_HOST_MAX_WORK', 0)
      assert rdm_lib._auto_impl(x) == 'xla'
      np.testing.assert_array_equal(
        rdm_lib.rdm(x, metric), rdm_lib.rdm(x, metric, impl='xla')
      )


@pytest.mark.parametrize('metric', rdm_lib.METRICS)
def test_small_inputs_compile_nothing(metric):
  """A first call at a new (n, metric) below AUTO_HOST_MAX_WORK compiles no
  program: numpy on the host, put on the device (a jax.Array, float32), the
  values of the device path (scipy float64 within the same bounds)."""
  for n, d in ((8, 531), (97, 533)):  # shapes no other test uses
    x = _x(n=n, d=d, seed=n)
    for given in (x, jax.device_put(x.astype(np.float32))):
      r, made = _programs(lambda g=given: rdm_lib.rdm(g, metric))
      assert made == [], made
      assert isinstance(r, jax.Array) and r.dtype == np.float32
      assert r.shape == (n, n)
      r = np.asarray(r)
      assert _err(r, squareform(pdist(x, metric))) < F32_TOL[metric]
      np.testing.assert_array_equal(r, r.T)
      np.testing.assert_array_equal(np.diag(r), 0)
      dev = np.asarray(rdm_lib.rdm(given, metric, impl='xla'))
      assert np.abs(r - dev).max() <= 2 * F32_TOL[metric] * np.abs(dev).max()


def test_small_host_calls_use_one_blas_thread(monkeypatch):
  """Threaded OpenBLAS on a busy host waits for descheduled workers:
  small host RDMs run on one thread, large ones on all."""
  if rdm_lib._BLAS is None:
    pytest.skip('no BLAS thread control here')
  seen = []
  real = np.matmul

  def matmul(*a, **kw):
    seen.append(rdm_lib._BLAS.info()[0]['num_threads'])
    return real(*a, **kw)

  monkeypatch.setattr(np, 'matmul', matmul)
  threads = rdm_lib._BLAS.info()[0]['num_threads']
  rdm_lib.rdm(_x(n=40, d=50), 'correlation')
  rdm_lib.rdm(_x(n=40, d=50), 'euclidean')
  rdm_lib.rdm(np.stack([_x(n=9, d=50)] * 3), 'cosine')
  assert seen == [1, 1, 1]
  assert rdm_lib._BLAS.info()[0]['num_threads'] == threads  # restored
  del seen[:]
  monkeypatch.setattr(rdm_lib, 'AUTO_HOST_MAX_WORK', 0)
  rdm_lib.rdm(_x(n=40, d=50), 'correlation', impl='blas')
  assert seen == [threads]


@pytest.mark.parametrize('metric', rdm_lib.METRICS)
def test_batch_of_rdms_equals_each_rdm(metric, monkeypatch):
  """rdm(x [k, n, d]) -> [k, n, n]: the host in one vectorised pass (small),
  item by item (large), or one vmapped program: each item's RDM."""
  xs = np.stack([_x(n=12, d=40, seed=s) for s in range(5)])
  xs[4] *= 100.0  # items on other scales
  refs = [squareform(pdist(x, metric)) for x in xs]
  runs = {'host': lambda: rdm_lib.rdm(xs, metric)}
  runs['xla'] = lambda: rdm_lib.rdm(xs, metric, impl='xla')

  def large():
    with monkeypatch.context() as m:
      m.setattr(rdm_lib, 'AUTO_HOST_MAX_WORK', 0)
      return rdm_lib.rdm(xs, metric, impl='blas')

  runs['host, item by item'] = large
  for name, run in runs.items():
    r, made = _programs(run)
    assert made == (['jit(_rdm_xla_batch)'] if name == 'xla' else []), name
    assert isinstance(r, jax.Array) and r.shape == (5, 12, 12), name
    r = np.asarray(r)
    assert r.dtype == np.float32
    for k in range(5):
      assert _err(r[k], refs[k]) < F32_TOL[metric], (name, k)
      np.testing.assert_array_equal(r[k], r[k].T)
      np.testing.assert_array_equal(np.diag(r[k]), 0)
  # Of the same shape and bucket: the compiled batch program again.
  _, made = _programs(lambda: rdm_lib.rdm(xs + 1.0, metric, impl='xla'))
  assert made == []


@pytest.mark.parametrize('impl', ['blas', 'xla'])
def test_batch_checks_name_the_item(impl):
  xs = np.stack([_x(n=10, d=30, seed=s) for s in range(4)])
  xs[2, 5] = 1.5  # a constant row of item 2
  with pytest.raises(InputError, match=r'^batch item 2: .*image index\) 5 '):
    rdm_lib.rdm(xs, 'correlation', impl=impl)
  xs[2, 5] = xs[1, 5]
  xs[3, :, 7] = np.nan  # one NaN column of item 3
  with pytest.raises(InputError, match=r'^batch item 3: .*index 7\)'):
    rdm_lib.rdm(xs, 'euclidean', impl=impl)
  with pytest.raises(InputError, match='shape'):
    rdm_lib.rdm(xs[:, :1], impl=impl)
  mesh = jax.make_mesh((8,), ('data',))
  with pytest.raises(InputError, match='mesh'):
    rdm_lib.rdm(xs, mesh=mesh)


def _message(fn):
  with pytest.raises(InputError) as err:
    fn()
  text = str(err.value)
  assert '\n' not in text
  return text


@pytest.mark.parametrize('impl', ['blas', 'xla'])
@pytest.mark.parametrize('metric', rdm_lib.METRICS)
def test_nan_column_names_the_column_not_every_row(metric, impl):
  """One NaN voxel makes every row non-finite: the message names the
  column and says to drop or impute it, not to drop all 96 images."""
  x = _x(n=96, d=530).astype(np.float32)
  y = x.copy()
  y[:, 17] = np.nan
  text = _message(lambda: rdm_lib.rdm(y, metric, impl=impl))
  assert 'in 1 of 530 columns' in text and 'index 17)' in text, text
  assert 'drop or impute that column' in text and '96 response row' in text
  assert 'drop them' not in text and 'zero variance' not in text
  y[:, [3, 400]] = np.inf
  text = _message(lambda: rdm_lib.rdm(y, metric, impl=impl))
  assert 'in 3 of 530 columns' in text and 'index 3, 17, 400)' in text
  assert 'drop or impute those columns' in text
  # One bad row (all NaN): that row, to drop.
  y = x.copy()
  y[40] = np.nan
  text = _message(lambda: rdm_lib.rdm(y, metric, impl=impl))
  assert text.startswith(
    'response row (image index) 40 has non-finite values (NaN or inf), 1'
  ), text


@pytest.mark.parametrize('impl', ['blas', 'xla'])
def test_zero_variance_message_stays_for_finite_rows(impl):
  x = _x(n=50, d=60).astype(np.float32)
  x[[9, 30]] = 2.0
  text = _message(lambda: rdm_lib.rdm(x, 'correlation', impl=impl))
  assert text == (
    'response row (image index) 9 has zero variance, 2 such rows in all:'
    ' drop them before the correlation RDM'
  )
  x[3, 11] = np.nan  # and a NaN cell: the column first, then the rest
  text = _message(lambda: rdm_lib.rdm(x, 'correlation', impl=impl))
  assert 'index 11), which leave 1 response row(s) (image index 3)' in text
  assert text.endswith('; also 2 row(s) of zero variance (image index 9, 30)')
  z = np.zeros_like(x[:4])
  z[:, 0] = 1.0
  z[2] = 0.0
  text = _message(lambda: rdm_lib.rdm(z, 'cosine', impl=impl))
  assert text.startswith('response row (image index) 2 is all zeros, 1 such')
