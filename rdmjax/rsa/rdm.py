"""Responses -> dissimilarities: RDMs, cross blocks, paired rows, streams.

Every RDM metric (1 - Pearson, Euclidean, squared Euclidean, 1 - cosine)
from the primitives of `rdmjax.rsa.rows`: `rdm` (the whole matrix:
upper-triangle blocks mirrored on one device, strips of a ring over a mesh,
or the host's BLAS), `cross_rdm` (rows of a vs rows of b: pair targets of
a block) and `paired` (row k of a vs row k of b). Public API: `rdm`,
`compare_rdms` (from `rdmjax.rsa.compare`).

`rdm` also takes a batch [k, n, d] of response sets (one host pass or one
program); the other functions are single-subject: `vmap` at the call site.
Under a transformation the zero-variance check cannot run on the host: such
rows give NaN values.
"""

from __future__ import annotations

import contextlib
import functools

import jax

# jax imports this on its first device_put (~1 ms); here, with the module,
# so that a process's first small RDM (host path: one device_put) pays no
# import.
import jax.experimental.multihost_utils  # noqa: F401
import jax.numpy as jnp
import numpy as np
import threadpoolctl
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rdmjax.errors import InputError
from rdmjax.rsa.compare import _upper as upper_entries
from rdmjax.rsa.compare import compare_rdms, upper_mean
from rdmjax.rsa.rows import (
  METRICS,
  PRECISIONS,
  _check_names,
  _check_shape,
  _rows,
  _symmetrise,
  cast_for,
  check_input,
  cross_rdm,
  default_tile,
  gram,
  paired,
  prepare_rows,
  raise_bad_rows,
  values_from_gram,
  width_bucket,
)
from rdmjax.sharding import aligned_empty

# The primitives of `rdmjax.rsa.rows` are importable from here too.
__all__ = [
  'METRICS',
  'PRECISIONS',
  'cast_for',
  'check_input',
  'compare_rdms',
  'cross_rdm',
  'default_tile',
  'gram',
  'paired',
  'prepare_rows',
  'raise_bad_rows',
  'rdm',
  'values_from_gram',
  'width_bucket',
]


@functools.partial(jax.jit, static_argnames=('metric', 'precision', 'tile'))
def _rdm_blocks(z, sq, *, metric: str, precision: str, tile: int):
  """The tiles on and above the diagonal, mirrored. z: [n, d]; -> [n, n].

  Rows are zero-padded to whole tiles and a `lax.scan` walks the upper
  tiles: one [tile, d] x [d, tile] product shape, compiled (and on a GPU
  autotuned) once, whatever n; the arithmetic of one triangle plus the
  diagonal tiles.
  """
  n = z.shape[0]
  nb = -(-n // tile)
  pad = nb * tile - n
  zc = cast_for(jnp.pad(z, ((0, pad), (0, 0))), precision)
  sqp = jnp.pad(sq, (0, pad))
  bi, bj = np.triu_indices(nb)

  def body(out, ij):
    r, c = ij[0] * tile, ij[1] * tile
    a = lax.dynamic_slice_in_dim(zc, r, tile)
    b = lax.dynamic_slice_in_dim(zc, c, tile)
    sa = lax.dynamic_slice_in_dim(sqp, r, tile)
    sb = lax.dynamic_slice_in_dim(sqp, c, tile)
    v = values_from_gram(
      gram(a, b, precision), sa[:, None], sb[None, :], metric
    )
    return lax.dynamic_update_slice(out, v, (r, c)), None

  out = jnp.zeros((nb * tile, nb * tile), jnp.float32)
  ij = jnp.stack([jnp.asarray(bi), jnp.asarray(bj)], 1).astype(jnp.int32)
  out, _ = lax.scan(body, out, ij)
  return _symmetrise(out[:n, :n])


def _constrain(x: jax.Array, sharding: NamedSharding) -> jax.Array:
  """Sharding constraint for Explicit (reshard) and Auto meshes alike."""
  explicit = jax.sharding.AxisType.Explicit in sharding.mesh.axis_types
  if explicit:
    return jax.sharding.reshard(x, sharding)
  return lax.with_sharding_constraint(x, sharding)


def mesh_strips(n: int, n_dev: int) -> tuple[int, np.ndarray]:
  """How the sharded RDM splits one triangle evenly over n_dev devices.

  Rows are cut into nb = 2 n_dev blocks of b rows (zero-padded) on a ring.
  Block row r is computed against the n_dev + 1 column blocks r, r + 1,
  ..., r + n_dev (mod nb): every pair of blocks is then computed once
  (those n_dev apart twice), nb (n_dev + 1) blocks in all against the
  triangle's n_dev (nb + 1). Device k takes block rows k and k + n_dev:
  the same work everywhere, as one batched product of fixed shape.

  Returns:
    (b, rows): block side, [n_dev, 2] the block rows of each device.
  """
  b = -(-n // (2 * n_dev))
  k = np.arange(n_dev, dtype=np.int32)
  return b, np.stack([k, k + n_dev], 1)


def _rdm_mesh(z, sq, mesh: Mesh, metric: str, precision: str):
  """The RDM on the devices of mesh axis 'data': one triangle, balanced.

  Each device computes its two strips (`mesh_strips`) from the replicated
  rows in one batched product, about half the arithmetic of full row
  blocks; the strips are gathered, the rest mirrored. Rows of the result
  stay sharded when n divides over the devices.
  """
  if 'data' not in mesh.axis_names:
    raise InputError(f'mesh axes {mesh.axis_names}: add a "data" axis')
  n, nd = z.shape[0], mesh.shape['data']
  b, rows = mesh_strips(n, nd)
  npad = 2 * nd * b
  rep = NamedSharding(mesh, P())
  zp = jnp.pad(z, ((0, npad - n), (0, 0)))
  sp = jnp.pad(sq, (0, npad - n))
  zp, sp = jax.device_put((zp, sp), rep)
  run = _mesh_program(mesh, n, metric, precision)
  return run(zp, sp, jax.device_put(rows, NamedSharding(mesh, P('data'))))


@functools.lru_cache(maxsize=32)
def _mesh_program(mesh: Mesh, n: int, metric: str, precision: str):
  """The jitted sharded RDM of n rows (built once per mesh, n, metric)."""
  nd = mesh.shape['data']
  b, _ = mesh_strips(n, nd)
  nb, w = 2 * nd, (nd + 1) * b  # blocks on the ring, strip width
  npad = nb * b
  row, rep = NamedSharding(mesh, P('data')), NamedSharding(mesh, P())

  def local(zp, sp, r):  # r: [1, 2] this device's block rows
    zc = cast_for(jnp.concatenate([zp, zp]), precision)  # the ring, unrolled
    s2 = jnp.concatenate([sp, sp])
    a = jnp.stack([lax.dynamic_slice_in_dim(zc, i * b, b) for i in r[0]])
    c = jnp.stack([lax.dynamic_slice_in_dim(zc, i * b, w) for i in r[0]])
    sa = jnp.stack([lax.dynamic_slice_in_dim(s2, i * b, b) for i in r[0]])
    sc = jnp.stack([lax.dynamic_slice_in_dim(s2, i * b, w) for i in r[0]])
    g = gram(a, c, precision)  # [2, b, w]: both strips, one product
    v = values_from_gram(g, sa[:, :, None], sc[:, None, :], metric)
    return v[None]  # [1, 2, b, w]

  f = jax.shard_map(
    local, mesh=mesh, in_specs=(P(), P(), P('data')), out_specs=P('data')
  )
  # Block (R, C) is column block (C - R) % nb of strip R, or the transpose
  # of block (C, R) of strip C: static gathers, no scatter. Blocks computed
  # both ways (diagonal, and nd apart) are taken from the upper one, and
  # diagonal blocks mirrored within: exactly symmetric, zero diagonal.
  grid_r, grid_c = np.meshgrid(np.arange(nb), np.arange(nb), indexing='ij')
  ahead, behind = (grid_c - grid_r) % nb, (grid_r - grid_c) % nb
  direct = (ahead <= nd) & ((behind > nd) | (grid_r <= grid_c))
  src = np.where(
    direct, grid_r * (nd + 1) + ahead, grid_c * (nd + 1) + behind
  ).astype(np.int32)
  per = npad // nd  # output rows per device

  def assemble(tiles, src_rows, direct_rows):
    """This device's rows of the matrix from the gathered tiles."""
    t = tiles[src_rows[0]]  # [per // b, nb, b, b]
    t = jnp.where(direct_rows[0][..., None, None], t, t.swapaxes(-1, -2))
    return t.transpose(0, 2, 1, 3).reshape(1, per, npad)

  g = jax.shard_map(
    assemble,
    mesh=mesh,
    in_specs=(P(), P('data'), P('data')),
    out_specs=P('data'),
  )
  src_dev = src.reshape(nd, per // b, nb)
  direct_dev = direct.reshape(nd, per // b, nb)
  eye = np.arange(npad)

  @jax.jit
  def run(zp, sp, r):
    strips = _constrain(f(zp, sp, r), rep)  # [nd, 2, b, w], gathered
    # Device k holds block rows k and k + nd: ring order, then its tiles.
    strips = strips.transpose(1, 0, 2, 3).reshape(nb, b, nd + 1, b)
    tiles = strips.transpose(0, 2, 1, 3).reshape(-1, b, b)
    tiles = tiles.at[np.arange(nb) * (nd + 1)].set(
      _symmetrise(tiles[np.arange(nb) * (nd + 1)])
    )
    full = g(
      tiles,
      jax.device_put(src_dev, row),
      jax.device_put(direct_dev, row),
    ).reshape(npad, npad)
    full = jnp.where(eye[:, None] == eye[None, :], 0.0, full)
    if npad == n:
      return full  # rows sharded
    return _constrain(full, rep)[:n, :n]

  return run


# impl='auto' computes on the host (numpy, `_host_rdm`; nothing compiled)
# in two regimes, for float32/tf32/bf16_3x, without tile or mesh, for a
# concrete (not traced) x.
#
# Small inputs, on every backend: n * n * d (times k for a batch [k, n, d])
# at most AUTO_HOST_MAX_WORK and n < AUTO_BLAS_MIN_ROWS. There the XLA
# path's compile, once per (n, width bucket, metric), costs 50-1000x the
# work. On the 2-core CPU host, float32 input, correlation / euclidean,
# p10-p50 of interleaved calls: host (one BLAS thread) / compiled XLA / XLA's
# first call (the compile): 96 x 530: 0.20-0.25 / 0.26-0.38 / 133-270 ms;
# 256 x 512: 0.61-0.75 / 0.62-0.78 / 141-225 ms; at the bound, 512 x 512,
# 256 x 2048, 724 x 256: 1.9-3.0 / 1.3-3.2 / 160-360 ms. So a compiled
# program is at most ~1 ms a call faster there (on a GPU a few ms): a
# compile pays for itself only after ~100 calls of one shape, and an
# analysis over runs, conditions and subjects meets a new n each time.
# Small host calls use one BLAS thread (`_blas_threads`): threaded OpenBLAS
# on a busy 2-core host waits for a descheduled worker (96 x 530: p90
# 14-48 ms; 256 x 512: median 20-34 ms, against 0.2 and 0.4-3 ms on one
# thread), and one thread is as fast at these sizes.
AUTO_HOST_MAX_WORK = 1 << 27  # n * n * d, ~1.3e8 (512 x 512, 256 x 2048)

# Large inputs, on a CPU backend: large by any of these (n x d input): n
# rows (the xla path holds several n x n float32 buffers at its peak, the
# blas path one), n * n * d Gram work (where OpenBLAS's syrk beats XLA's
# tiles), or x's bytes (the xla path copies x up to three times: to the
# device, padded to `width_bucket`, prepared; the blas path reads x uncopied
# where it can). Medians on the 2-core CPU host, numpy float32 input,
# correlation and euclidean alike, calls interleaved: 1024 x 1024: blas 48,
# xla 39 ms; 2048 x 2048 and 1536 x 2048: even; 4096 x 64: 205 / 310 ms;
# 4096 x 512: 263 / 372 ms; 1024 x 8192: 285 / 298 ms; 9841 x 2000: 2.3 /
# 4.1 s. Between the two regimes a CPU runs the compiled XLA tiles.
AUTO_BLAS_MIN_ROWS = 2048
AUTO_BLAS_MIN_WORK = 1 << 33  # n * n * d, ~8.6e9 (1024 x 8192)
AUTO_BLAS_MIN_BYTES = 256 << 20  # x as float32


def _work(shape) -> int:
  """n * n * d of [n, d], k * n * n * d of a batch [k, n, d]."""
  *k, n, d = shape
  return int(np.prod(k, dtype=np.int64)) * n * n * d


def _auto_impl(
  x,
  *,
  precision: str = 'float32',
  tile: int | None = None,
  mesh: Mesh | None = None,
) -> str:
  """The path `rdm(x, impl='auto')` takes: 'blas' (the host) or 'xla'.

  'blas' for float32/tf32/bf16_3x, without tile or mesh, for a concrete
  (not traced) x that is small (AUTO_HOST_MAX_WORK, any backend) or, on a
  CPU backend, large by one of AUTO_BLAS_*; else 'xla'. x: anything with a
  2-d or 3-d (batch) `shape` (an array, jax.ShapeDtypeStruct); nothing is
  computed or allocated.
  """
  traced = isinstance(x, jax.core.Tracer)
  plain = tile is None and mesh is None and precision != 'bf16'
  shape = tuple(getattr(x, 'shape', ()))
  if not (plain and not traced) or len(shape) not in (2, 3):
    return 'xla'  # (a bad shape: the xla path's checks name it)
  n, d = shape[-2:]
  if n < AUTO_BLAS_MIN_ROWS and _work(shape) <= AUTO_HOST_MAX_WORK:
    return 'blas'
  large = (
    n >= AUTO_BLAS_MIN_ROWS
    or n * n * d >= AUTO_BLAS_MIN_WORK
    or n * d * 4 >= AUTO_BLAS_MIN_BYTES
  )
  return 'blas' if large and jax.default_backend() == 'cpu' else 'xla'


def _blas_controller():
  """numpy's BLAS libraries (threadpoolctl), found once at import: finding
  them takes ~4 ms, limiting them then ~10 us a call."""
  try:
    return threadpoolctl.ThreadpoolController().select(user_api='blas')
  except (OSError, AttributeError, ValueError):  # no control: threads stay
    return None


_BLAS = _blas_controller()


def _blas_threads(shape):
  """One BLAS thread while a small input's host RDM is computed (see
  AUTO_HOST_MAX_WORK); large ones keep every thread."""
  if _BLAS is None or _work(shape) > AUTO_HOST_MAX_WORK:
    return contextlib.nullcontext()
  return _BLAS.limit(limits=1)


def rdm(
  x,
  metric: str = 'correlation',
  *,
  precision: str = 'float32',
  tile: int | None = None,
  mesh: Mesh | None = None,
  impl: str = 'auto',
) -> jax.Array:
  """The representational dissimilarity matrix of the rows of x.

  Args:
    x: [n_images, d] responses (numpy or jax; computed in float32), or a
      batch [k, n_images, d] of k response sets of the same shape (runs,
      subjects, bootstrap draws): k RDMs in one call, in one host pass or
      one compiled program (on an accelerator, one program for the whole
      batch), not k calls. A batch takes no mesh.
    metric: 'correlation' (1 - Pearson r of two rows), 'euclidean' (L2),
      'sqeuclidean' (squared L2), 'cosine' (1 - cosine similarity).
    precision: 'float32' (full f32 products), 'tf32' (the backend default:
      TF32 on NVIDIA GPUs, f32 on CPU), 'bf16_3x' (three bf16 products per
      f32 product: near-f32 accuracy on tensor cores), 'bf16' (bf16 inputs,
      f32 sums). The host path computes float32 products for all but
      'bf16', which always runs on the device.
    tile: block-row height (default `default_tile(n)`); only blocks on or
      above the diagonal are computed.
    mesh: a Mesh with a 'data' axis: row blocks are computed on its devices.
    impl: 'xla' (jitted triangular tiles), 'blas' (the Gram through numpy's
      BLAS on the host: `z @ z.T` is one symmetric rank-k update, half a
      product, with no copy of x and one n x n buffer; the result put on
      the default device), or 'auto' (`_auto_impl`): 'blas' without mesh
      or tile for small inputs on any backend (n * n * d, times k for a
      batch, at most AUTO_HOST_MAX_WORK = 2^27 and n < 2048: there a
      compile, once per n and metric, costs far more than the work) and
      for large inputs on a CPU backend (see AUTO_BLAS_*), else 'xla'.
      XLA's CPU matrix product runs at ~40% of OpenBLAS on a full ROI
      (2000 x 39548: 4.1 s against numpy's 1.55 s syrk). The XLA path
      compiles once per row count (~0.1-0.8 s on a 2-core CPU host).

  Returns:
    [n_images, n_images] f32 (a batch: [k, n_images, n_images]), symmetric
    with an exact zero diagonal; a jax.Array either way.
  """
  if impl not in ('auto', 'xla', 'blas'):
    raise InputError(f'impl {impl!r} unknown: use auto, xla or blas')
  if not hasattr(x, 'shape'):
    x = np.asarray(x, np.float32)  # nested lists
  if impl == 'auto':
    impl = _auto_impl(x, precision=precision, tile=tile, mesh=mesh)
  if getattr(x, 'ndim', 0) == 3:
    return _rdm_batch(x, metric, precision, tile, mesh, impl)
  if impl == 'blas' and mesh is None:
    _check_shape(x, metric, precision)
    with _blas_threads(x.shape):
      return jax.device_put(_host_rdm(x, metric))
  d_valid, given = None, x  # (the messages name given's columns)
  if impl == 'xla' and getattr(x, 'ndim', 0) == 2:
    x, d_valid = _bucket_columns(x)
  x = check_input(x, metric, precision)
  if mesh is not None:
    z, sq, bad = prepare_rows(x, metric, d_valid=d_valid)
    raise_bad_rows(bad, metric, given)
    return _rdm_mesh(z, sq, mesh, metric, precision)
  tile = _xla_tile(x.shape[0], tile)
  r, bad = _rdm_xla(x, d_valid, metric=metric, precision=precision, tile=tile)
  raise_bad_rows(bad, metric, given)
  return r


def _rdm_batch(x, metric, precision, tile, mesh, impl) -> jax.Array:
  """`rdm` of a batch x [k, n, d] -> [k, n, n]: on the host one pass into
  one [k, n, n] buffer, else one vmapped program (`_rdm_xla_batch`)."""
  _check_names(metric, precision)
  if x.shape[0] < 1 or x.shape[1] < 2:
    raise InputError(f'responses shape {x.shape}: pass [k >= 1, n >= 2, d]')
  if mesh is not None:
    raise InputError('a batch [k, n, d] takes no mesh: pass one [n, d]')
  if impl == 'blas' and _work(x.shape) <= AUTO_HOST_MAX_WORK:
    with _blas_threads(x.shape):
      return jax.device_put(_host_rdms(x, metric))
  if impl == 'blas':  # large: each item as one [n, d] RDM, uncopied
    k, n, _ = x.shape
    out = aligned_empty((k, n, n))
    for b in range(k):
      _host_rdm(x[b], metric, out=out[b], item=b)
    return jax.device_put(out)
  z, d_valid = _bucket_columns(x)
  if not isinstance(z, (jax.Array, jax.core.Tracer)):
    # Cast on the host (jnp.asarray would compile a program per shape);
    # jax arrays are cast inside the program.
    z = jax.device_put(np.asarray(z, np.float32))
  tile = _xla_tile(z.shape[1], tile)
  r, bad = _rdm_xla_batch(
    z, d_valid, metric=metric, precision=precision, tile=tile
  )
  raise_bad_rows(bad, metric, x)
  return r


def _host_rdm(x, metric: str, out=None, item=None) -> np.ndarray:
  """The host path's RDM of x [n, d] (checked 2-d), float32 numpy, into
  out ([n, n], default a new aligned buffer); bad rows raise InputError
  (item: the batch index they name)."""
  if metric in ('correlation', 'cosine'):
    g = _rdm_blas_raw(x, metric, out)  # no copy of x where it is safe
    if g is not None:
      return g
  z, sq, bad = _rows_host(x, metric)
  raise_bad_rows(bad, metric, x, item=item)
  return _rdm_blas(z, sq, metric, out)


def _host_rdms(x, metric: str) -> np.ndarray:
  """The host RDMs of a small batch x [k, n, d] in one vectorised pass:
  rows prepared as `_rows_host` prepares them (one float32 copy), one
  symmetric BLAS product per item; -> [k, n, n] float32."""
  z = np.array(x, np.float32)
  k, n, _ = z.shape
  with np.errstate(invalid='ignore', over='ignore'):
    bad = ~np.isfinite(z).all(-1)
    if metric in ('correlation', 'cosine'):
      scale = np.sqrt(np.einsum('kij,kij->ki', z, z))
      if metric == 'correlation':
        z -= z.mean(-1, keepdims=True)
        z -= z.mean(-1, keepdims=True)  # the float32 rounding of the first
      norm = np.sqrt(np.einsum('kij,kij->ki', z, z))
      bad |= (norm <= 8 * np.finfo(np.float32).eps * scale) | (norm == 0)
  raise_bad_rows(bad, metric, x)
  if metric in ('correlation', 'cosine'):
    z /= norm[..., None]
  else:
    z -= z.mean(1, keepdims=True)  # columns, as `_rows_host`
  # Per item numpy sees z and its transpose share memory: ssyrk, exactly
  # symmetric.
  g = np.matmul(z, z.swapaxes(1, 2), out=aligned_empty((k, n, n)))
  if metric in ('correlation', 'cosine'):
    np.subtract(1.0, g, out=g)
    np.clip(g, 0.0, 2.0, out=g)
  else:
    sq = np.einsum('kij,kij->ki', z, z)
    g *= -2.0
    g += sq[:, :, None] + sq[:, None, :]  # the same sum in both triangles
    np.maximum(g, 0.0, out=g)
    if metric == 'euclidean':
      np.sqrt(g, out=g)
  eye = np.arange(n)
  g[:, eye, eye] = 0.0
  return g


def rdm_mean(x, metric: str = 'correlation', *, precision: str = 'float32'):
  """The mean of `rdm(x, metric)`'s entries i < j.

  Where `rdm` takes the XLA path, the value of
  `compare.upper_mean(rdm(x, metric, precision=precision))` in one program
  with the RDM (a training run's mean target: one compile, not two); where
  it takes the host path, a float64 sum over the host's RDM (nothing
  compiled).

  Returns:
    A Python float.
  """
  if not hasattr(x, 'shape'):
    x = np.asarray(x, np.float32)
  impl = _auto_impl(x, precision=precision)
  if impl == 'blas' and x.ndim == 2:
    _check_shape(x, metric, precision)
    with _blas_threads(x.shape):
      g = _host_rdm(x, metric)
    n = g.shape[0]  # symmetric, zero diagonal: the sum is twice the upper
    return float(g.sum(dtype=np.float64) / (n * (n - 1)))
  if impl != 'xla' or x.ndim != 2:
    return upper_mean(rdm(x, metric, precision=precision))
  _check_names(metric, precision)
  z, d_valid = _bucket_columns(x)
  z = check_input(z, metric, precision)
  tile = _xla_tile(z.shape[0], None)
  mean, bad = _rdm_mean_xla(
    z, d_valid, metric=metric, precision=precision, tile=tile
  )
  raise_bad_rows(bad, metric, x)
  return float(mean)


def _bucket_columns(x):
  """(x, d_valid): x with zero columns up to `width_bucket` and its true
  width as a numpy scalar (a jnp one compiles a program of its own), or x
  as it is and None. Zero columns change no distance; the row means use
  the true width."""
  d = x.shape[-1]
  if d == width_bucket(d):
    return x, None
  return _pad_columns(x, width_bucket(d)), np.int32(d)


def _xla_tile(n: int, tile: int | None) -> int:
  return max(int(tile or default_tile(n)), -(-n // 64))


@functools.partial(jax.jit, static_argnames=('metric', 'precision', 'tile'))
def _rdm_xla(x, d_valid, *, metric: str, precision: str, tile: int):
  """`prepare_rows` and `_rdm_blocks` as one program: (RDM [n, n], bad
  rows [n]). One compile per (shape, metric), not two; the bad rows are
  checked after (their RDM rows are NaN)."""
  z, sq, bad = _rows(x, metric, d_valid=d_valid)
  return _rdm_blocks(z, sq, metric=metric, precision=precision, tile=tile), bad


@functools.partial(jax.jit, static_argnames=('metric', 'precision', 'tile'))
def _rdm_xla_batch(x, d_valid, *, metric: str, precision: str, tile: int):
  """`_rdm_xla` over a batch x [k, n, d]: ([k, n, n], bad rows [k, n]),
  one program for the batch."""
  one = functools.partial(
    _rdm_xla, metric=metric, precision=precision, tile=tile
  )
  return jax.vmap(one, in_axes=(0, None))(x, d_valid)


@functools.partial(jax.jit, static_argnames=('metric', 'precision', 'tile'))
def _rdm_mean_xla(x, d_valid, *, metric: str, precision: str, tile: int):
  """(mean of the entries i < j [], bad rows [n]) of `_rdm_xla`'s RDM."""
  r, bad = _rdm_xla(x, d_valid, metric=metric, precision=precision, tile=tile)
  return jnp.mean(upper_entries(r)), bad


def _pad_columns(x, width: int):
  """x ([n, d] or [k, n, d]) with zero columns appended up to width (on
  the host for numpy)."""
  pad = ((0, 0),) * (x.ndim - 1) + ((0, width - x.shape[-1]),)
  if isinstance(x, jax.Array):
    return jnp.pad(x.astype(jnp.float32), pad)
  out = np.zeros((*x.shape[:-1], width), np.float32)
  out[..., : x.shape[-1]] = x
  return out


# The raw-Gram path centres algebraically: sum_k (x_ik - m_i)(x_jk - m_j) =
# G_ij - d m_i m_j. It is used only where each row's mean carries at most
# this fraction of the row's energy G_ii, so the subtraction loses < 1 bit.
RAW_MEAN_ENERGY = 0.25


def _rdm_blas_raw(x, metric: str, out=None) -> np.ndarray | None:
  """Correlation/cosine RDM from the Gram of the raw rows: no copy of x.

  One symmetric BLAS product of x itself and one matrix-vector product for
  the row sums; centring and normalisation act on the n x n result. Returns
  None (the caller prepares rows explicitly) where the shape is not a
  matrix of >= 2 rows, a row is not finite or constant, or a row's mean is
  large against its spread (see RAW_MEAN_ENERGY). out: the [n, n] float32
  buffer to fill (default a new aligned one, which device_put shares on a
  CPU).
  """
  x = np.asarray(x, np.float32)  # no copy for f32 host (or CPU jax) arrays
  if x.ndim != 2 or x.shape[0] < 2:
    return None
  d = x.shape[1]
  # Decide before the product (one pass each, no temporaries), so a refusal
  # costs no Gram.
  energy = np.einsum('ij,ij->i', x, x).astype(np.float64)
  if not np.all(np.isfinite(energy)) or not np.all(energy > 0):
    return None
  if metric == 'correlation':
    mean = (x @ np.ones(d, np.float32)).astype(np.float64) / d
    if np.any(d * mean**2 > RAW_MEAN_ENERGY * energy):
      return None
  if out is None:
    out = aligned_empty((x.shape[0], x.shape[0]))
  g = np.matmul(x, x.T, out=out)  # ssyrk: numpy sees x and x.T share memory
  # The Gram's own diagonal: the same rounding as the entries it scales.
  energy = np.diagonal(g).astype(np.float64)
  if metric == 'correlation':
    spread = energy - d * mean**2
    m32 = mean.astype(np.float32)
    for r in range(0, g.shape[0], 1024):  # bounded temporaries
      # m_i m_j first: the same product in both triangles, so symmetric.
      g[r : r + 1024] -= (m32[r : r + 1024, None] * m32[None, :]) * d
  else:
    spread = energy
  inv = (1.0 / np.sqrt(spread)).astype(np.float32)
  for r in range(0, g.shape[0], 1024):
    g[r : r + 1024] *= inv[r : r + 1024, None] * inv[None, :]
  # Symmetric products on both triangles: still exactly symmetric.
  np.subtract(1.0, g, out=g)
  np.clip(g, 0.0, 2.0, out=g)
  np.fill_diagonal(g, 0.0)
  return g


# The euclidean metrics centre columns only against cancellation in
# |a|^2 + |b|^2 - 2ab; columns whose means are at most this fraction of the
# rows' rms (standardised responses: ~1e-8) are used as they are, uncopied.
CENTRED_MEAN = 1e-4


def _rows_host(x, metric: str):
  """`_rows` for the host BLAS path, in numpy: one float32 copy of x,
  changed in place (nothing compiled, so no program per ROI width); for the
  euclidean metrics no copy where x's columns are centred already."""
  if metric in ('euclidean', 'sqeuclidean'):
    a = np.asarray(x)
    if a.dtype == np.float32 and a.flags.c_contiguous:
      sq = np.einsum('ij,ij->i', a, a)
      finite = np.isfinite(sq)
      mean = a.mean(0, dtype=np.float64)
      rms = np.sqrt(sq.astype(np.float64).mean() / a.shape[1])
      if finite.all() and np.abs(mean).max() <= CENTRED_MEAN * rms:
        return a, sq, ~finite
  z = np.array(x, np.float32)
  finite = np.ones(z.shape[0], bool)
  for r in range(0, z.shape[0], 1024):  # bounded temporaries
    finite[r : r + 1024] = np.isfinite(z[r : r + 1024]).all(1)
  if metric in ('correlation', 'cosine'):
    with np.errstate(invalid='ignore', over='ignore'):  # (rows not finite)
      scale = np.sqrt(np.einsum('ij,ij->i', z, z))
      if metric == 'correlation':
        z -= z.mean(1, keepdims=True)
        z -= z.mean(1, keepdims=True)  # the float32 rounding of the first
      norm = np.sqrt(np.einsum('ij,ij->i', z, z))
      tol = 8 * np.finfo(np.float32).eps * scale
      bad = ~finite | (norm <= tol) | (norm == 0)
    z /= np.where(bad, 1.0, norm).astype(np.float32)[:, None]
    z[bad] = np.nan
    return z, np.ones(z.shape[0], np.float32), bad
  with np.errstate(invalid='ignore'):  # (inf - inf: rows not finite)
    z -= z.mean(0, keepdims=True)
  return z, np.einsum('ij,ij->i', z, z), ~finite


def _rdm_blas(z: np.ndarray, sq: np.ndarray, metric: str, out=None):
  """The host path: one BLAS call for the Gram, in-place elementwise ops;
  -> [n, n] float32 numpy (out, if given)."""
  # numpy sees z and z.T share memory: ssyrk, half the flops. Into an
  # aligned buffer that device_put shares on CPU: no second n x n copy.
  if out is None:
    out = aligned_empty((z.shape[0], z.shape[0]))
  g = np.matmul(z, z.T, out=out)
  if metric in ('correlation', 'cosine'):
    np.subtract(1.0, g, out=g)
    np.clip(g, 0.0, 2.0, out=g)
  else:
    for r in range(0, g.shape[0], 1024):  # bounded temporaries
      # (sq_i + sq_j) first: the same sum in both triangles, so symmetric.
      rows = g[r : r + 1024]
      rows *= -2.0
      rows += sq[r : r + 1024, None] + sq[None, :]
    np.maximum(g, 0.0, out=g)
    if metric == 'euclidean':
      np.sqrt(g, out=g)
  # syrk fills both triangles from one: exactly symmetric already.
  np.fill_diagonal(g, 0.0)
  return g
