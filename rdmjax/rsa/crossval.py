"""Cross-validated distances of run-wise patterns: crossnobis and its noise.

Patterns x [N, P] (N measurements, e.g. GLM betas, of P channels) carry a
condition label and a run (fold) label each. The values equal rsatoolbox's
(0.3.x) for the same data; names and exact definitions:

- `average_by(x, labels)`: the mean pattern of each label, m_c = (1 / n_c)
  sum_{k: label_k = c} x_k, labels in sorted order (rsatoolbox's
  `average_dataset_by` gives the same means in order of first appearance).
- `precision_from_residuals(e)` and `precision_from_measurements(x,
  conditions)`: the noise precision W = Sigma^-1 [P, P], with Sigma
  estimated from residuals e [n, P] (columns centred) by one of METHODS
  (below); from measurements the residuals are the patterns minus their
  condition's mean, with dof = N - C by default. rsatoolbox's
  `prec_from_residuals`, `prec_from_unbalanced`, and `prec_from_measurements`
  where that is given the same dof.
- `crossnobis(x, conditions, runs, noise)`: the cross-validated Mahalanobis
  distance of every two conditions i, j over leave-one-run-out folds f:

    d_ij = 1 / (F P) sum_f (r_fi - r_fj)^T W (t_fi - t_fj),

  t_fc the mean of condition c's patterns in run f, r_fc the mean of its
  patterns in all other runs (each pattern weighted equally), W the noise
  precision (the identity for noise=None: the cross-validated squared
  Euclidean distance over P). Unbiased, so it may be negative. rsatoolbox's
  `calc_rdm_crossnobis` (`calc_rdm(..., method='crossnobis')`), whose RDM
  holds these values as its condensed upper triangle.

Covariance estimators (e: [n, P] residuals with column means removed, dof
their degrees of freedom; E = e^T e, E2 = (e * e)^T (e * e), elementwise
squares):

- 'full': Sigma = E / dof.
- 'diag': Sigma = diag(E) / dof (zero off the diagonal).
- 'shrinkage_eye' (Ledoit & Wolf 2004): S = E / n, m = tr(S) / P, d2 =
  |S - m I|_F^2, b2 = min(d2, sum(E2 / n - S * S) / n); Sigma = (n / dof)
  ((b2 / d2) m I + (1 - b2 / d2) S).
- 'shrinkage_diag' (Schaefer & Strimmer 2005; the default, as in
  rsatoolbox): S = E / dof, R_jl = E_jl / (sqrt(S_jj S_ll) (n - 1)), V_jl =
  n / dof^2 (E2_jl / (S_jj S_ll (n - 1)) - R_jl^2), lambda = sum_{j != l}
  V_jl / sum_{j != l} R_jl^2 clipped to [0, 1]; Sigma = S on the diagonal,
  (1 - lambda) S off it.

Batches: x [S, N, P] (S searchlight spheres, ROIs or subjects with the same
design) runs as one compiled program (`jax.vmap` over the leading axis)
and gives [S, ...] results. dtype='float32' (the default) computes on
JAX's default device with full float32 products (never TF32), one program
per (shape, method): repeated calls of the same shapes compile nothing.
dtype='float64' computes in numpy on the host: the reference, equal to
rsatoolbox's to ~1e-14 relative (the tests assert 1e-10). Float32 against
float64, as max |a32 - a64| / max |a64| over the entries, on patterns with
a common offset of 5-10x the condition effects (tests/unit/rsa/
crossval_test.py: 6-8 conditions x 4-5 runs x 30-40 channels, and
launch/crossnobis_bench.py: 20 x 8 x 100): crossnobis ~2e-7 measured,
1e-5 asserted; precisions ~5e-7 measured, 1e-4 asserted (the inverse
amplifies rounding by the covariance's condition number; the list of
per-run precisions inverts twice).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rdmjax.errors import InputError

__all__ = [
  'DTYPES',
  'METHODS',
  'CrossvalRdm',
  'average_by',
  'crossnobis',
  'precision_from_measurements',
  'precision_from_residuals',
]

METHODS = ('shrinkage_diag', 'shrinkage_eye', 'diag', 'full')
DTYPES = ('float32', 'float64')


class CrossvalRdm(NamedTuple):
  """`crossnobis`'s result: unpacks as (rdm, conditions)."""

  rdm: jax.Array | np.ndarray  # [C, C] (or [S, C, C]), symmetric, zero diag
  conditions: np.ndarray  # [C] the condition labels, sorted: rdm's order


# ---------------------------------------------------------------- checks


def _check_dtype(dtype: str) -> None:
  if dtype not in DTYPES:
    raise InputError(f'dtype {dtype!r} unknown: use one of {DTYPES}')


def _check_method(method: str) -> None:
  if method not in METHODS:
    raise InputError(f'method {method!r} unknown: use one of {METHODS}')


def _check_patterns(x, what: str) -> tuple[int, int, bool]:
  """(n rows, P channels, batched) of x [n, P] or [S, n, P]."""
  shape = tuple(getattr(x, 'shape', ()))
  if len(shape) not in (2, 3) or 0 in shape:
    raise InputError(f'{what} shape {shape}: pass [n, P] or a batch [S, n, P]')
  return shape[-2], shape[-1], len(shape) == 3


def _labels(labels, n: int, name: str) -> np.ndarray:
  a = np.asarray(labels)
  if a.ndim != 1 or a.shape[0] != n:
    raise InputError(
      f'{name} has shape {a.shape} for {n} patterns: pass one label per'
      ' pattern (row of x)'
    )
  return a


def _columns(idx: np.ndarray) -> str:
  shown = ', '.join(str(int(i)) for i in idx[:5])
  return shown + (f', ... ({len(idx)} in all)' if len(idx) > 5 else '')


def _raise_bad_columns(bad, what: str, problem: str, fix: str) -> None:
  """InputError naming the first data set and its columns flagged in bad
  ([P] or [S, P] bool); nothing for a traced bad (inside a transformation)."""
  if isinstance(bad, jax.core.Tracer):
    return
  bad = np.asarray(bad)
  if not bad.any():
    return
  where = ''
  if bad.ndim == 2:
    sets = np.flatnonzero(bad.any(1))
    where = f' of data set {sets[0]} ({len(sets)} data sets in all)'
    bad = bad[sets[0]]
  cols = _columns(np.flatnonzero(bad))
  raise InputError(f'{what} column(s) {cols}{where} {problem}: {fix}')


def _raise_nonfinite(bad, what: str) -> None:
  _raise_bad_columns(
    bad,
    what,
    'have NaN or inf values',
    'drop those channels or fill them in first',
  )


def _nonfinite_columns(xp, x):
  """[..., P] bool: columns of x [..., n, P] with a NaN or inf."""
  return ~xp.all(xp.isfinite(x), axis=-2)


# ---------------------------------------------------------------- average_by


def average_by(x, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The mean pattern of each label.

  Args:
    x: [N, ...] patterns (numpy or jax; float64 for integer input).
    labels: [N] one label per pattern (numbers or strings).

  Returns:
    (means [C, ...], values [C] the unique labels in sorted order (the
    means' order), counts [C] int patterns per label): means[c] = the
    mean of the x[k] with labels[k] == values[c]. rsatoolbox's
    `average_dataset_by` gives the same means and counts in order of
    first appearance.
  """
  x = np.asarray(x)
  if x.ndim < 1 or x.shape[0] == 0:
    raise InputError(f'patterns shape {x.shape}: pass [N >= 1, ...] rows')
  lab = _labels(labels, x.shape[0], 'labels')
  values, inverse, counts = np.unique(
    lab, return_inverse=True, return_counts=True
  )
  order = np.argsort(inverse, kind='stable')
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
  sums = np.add.reduceat(x[order].astype(dtype, copy=False), starts, axis=0)
  means = sums / counts.reshape((-1,) + (1,) * (x.ndim - 1)).astype(dtype)
  return means, values, counts


# ---------------------------------------------------------------- precisions


def _covariance(xp, e, dof, method: str):
  """The noise covariance [P, P] of residuals e [n, P] by method (module
  docstring), xp numpy or jax.numpy; e's column means are removed here."""
  e = e - e.mean(0, keepdims=True)
  n, p = e.shape
  if method == 'diag':
    return xp.diag(xp.sum(e * e, 0) / dof)
  s_sum = e.T @ e
  if method == 'full':
    return s_sum / dof
  sq = e * e
  s2_sum = sq.T @ sq
  eye = xp.eye(p, dtype=e.dtype)
  if method == 'shrinkage_eye':
    s = s_sum / n
    b2 = xp.sum(s2_sum / n - s * s) / n
    m = xp.trace(s) / p
    d2 = xp.sum((s - m * eye) ** 2)
    b2 = xp.minimum(d2, b2)
    return (b2 / d2 * m * eye + (d2 - b2) / d2 * s) * (n / dof)
  s = s_sum / dof
  var = xp.diagonal(s)
  std = xp.sqrt(var)
  s_mean = s_sum / std[None, :] / std[:, None] / (n - 1)
  s2_mean = s2_sum / var[None, :] / var[:, None] / (n - 1)
  var_hat = n / dof**2 * (s2_mean - s_mean**2)
  off = 1.0 - eye
  lamb = xp.sum(var_hat * off) / xp.sum(s_mean**2 * off)
  lamb = xp.clip(lamb, 0.0, 1.0)
  return s * (eye + (1.0 - lamb) * off)


def _precision(xp, e, dof, method: str):
  cov = _covariance(xp, e, dof, method)
  if method == 'diag':
    return xp.diag(1.0 / xp.diagonal(cov))
  return xp.linalg.inv(cov)


def _flat_columns(xp, e, x):
  """[..., P] bool: residual columns of e [..., n, P] without variance,
  relative to the size of x's (the patterns e came from): what rounding
  leaves of a constant column."""
  c = e - e.mean(-2, keepdims=True)
  tol = 16 * xp.finfo(e.dtype).eps
  return xp.sum(c * c, -2) <= tol**2 * xp.sum(x * x, -2)


def _residuals(xp, x, inverse, counts):
  """x [N, P] minus the mean of each pattern's condition (inverse: [N]
  condition index, counts: [C] float)."""
  onehot = (inverse[None, :] == xp.arange(counts.shape[0])[:, None]).astype(
    x.dtype
  )
  means = (onehot @ x) / counts[:, None]
  return x - means[inverse]


@functools.partial(jax.jit, static_argnames=('method', 'batched'))
def _precision_program(x, inverse, counts, dof, *, method: str, batched: bool):
  """(precision [..., P, P], non-finite columns, flat columns) of residuals
  x, or of patterns x minus their condition means where inverse is given."""
  with jax.default_matmul_precision('float32'):

    def one(xi):
      e = xi if inverse is None else _residuals(jnp, xi, inverse, counts)
      return _precision(jnp, e, dof, method), _flat_columns(jnp, e, xi)

    prec, flat = jax.vmap(one)(x) if batched else one(x)
  return prec, _nonfinite_columns(jnp, x), flat


def _precision_any(x, inverse, counts, dof, method: str, dtype: str, what):
  """The float32 device program or the float64 host reference, checked."""
  _, _, batched = _check_patterns(x, what)
  if dtype == 'float64':
    xs = np.asarray(x, np.float64)
    _raise_nonfinite(_nonfinite_columns(np, xs), what)
    cnt = None if counts is None else counts.astype(np.float64)
    xs = xs if batched else xs[None]
    es = [
      xi if inverse is None else _residuals(np, xi, inverse, cnt) for xi in xs
    ]
    flat = np.stack([_flat_columns(np, e, xi) for e, xi in zip(es, xs)])
    _raise_flat(flat if batched else flat[0], what)
    prec = np.stack([_precision(np, e, float(dof), method) for e in es])
    return prec if batched else prec[0]
  xd = _device(x)
  inv_d = None if inverse is None else jax.device_put(inverse.astype(np.int32))
  cnt_d = None if counts is None else jax.device_put(counts.astype(np.float32))
  prec, nonfinite, flat = _precision_program(
    xd, inv_d, cnt_d, np.float32(dof), method=method, batched=batched
  )
  _raise_nonfinite(nonfinite, what)
  _raise_flat(flat, what)
  return prec


def _raise_flat(flat, what: str) -> None:
  _raise_bad_columns(
    flat,
    what,
    'have no residual variance',
    'drop those channels before estimating the noise precision',
  )


def _check_dof(dof, rows: int, p: int, method: str, default: int, how: str):
  """dof as a float; a full covariance of rank < P is an InputError."""
  if dof is None:
    dof = default
  if not np.isscalar(dof) or not dof > 0:
    raise InputError(f'dof {dof!r}: pass a positive number (default {how})')
  if method == 'full' and default < p:
    raise InputError(
      f"method 'full' from {rows} residual rows of rank <= {default} < {p}"
      " channels is singular: use 'shrinkage_diag' or more measurements"
    )
  return float(dof)


def precision_from_residuals(
  residuals,
  dof: float | None = None,
  method: str = 'shrinkage_diag',
  *,
  dtype: str = 'float32',
):
  """The noise precision W = Sigma^-1 of residuals (e.g. a GLM's).

  Args:
    residuals: [n, P] residuals (numpy or jax), or a batch [S, n, P] (one
      precision each, one compiled program). Column means are removed.
    dof: Sigma's degrees of freedom (default n - 1); pass n - k for the
      residuals of a GLM of k regressors.
    method: one of METHODS (module docstring for each formula).
    dtype: 'float32' (JAX, on the default device) or 'float64' (numpy on
      the host, the reference).

  Returns:
    [P, P] (or [S, P, P]) precision: a jax.Array for float32, numpy for
    float64. rsatoolbox's `prec_from_residuals(residuals, dof, method)`.
  """
  _check_dtype(dtype)
  _check_method(method)
  n, p, _ = _check_patterns(residuals, 'residuals')
  if n < 2:
    raise InputError(f'{n} residual row: pass >= 2 rows for a covariance')
  dof = _check_dof(dof, n, p, method, n - 1, 'n - 1')
  return _precision_any(residuals, None, None, dof, method, dtype, 'residuals')


def precision_from_measurements(
  x,
  conditions,
  dof: float | None = None,
  method: str = 'shrinkage_diag',
  *,
  dtype: str = 'float32',
):
  """The noise precision from repeated measurements of each condition.

  The residuals are the patterns minus their condition's mean (over all
  runs); W = Sigma^-1 of those as `precision_from_residuals`.

  Args:
    x: [N, P] patterns (numpy or jax), or a batch [S, N, P] with the same
      conditions.
    conditions: [N] the condition label of each pattern.
    dof: degrees of freedom (default N - C, C the number of conditions).
      rsatoolbox's `prec_from_measurements` defaults to (C - 1) R for R
      measurements per condition (its 3-d tensor branch); pass that to
      reproduce it. Its `prec_from_unbalanced` defaults to N - C.
    method: one of METHODS.
    dtype: 'float32' (JAX, on the default device) or 'float64' (numpy).

  Returns:
    [P, P] (or [S, P, P]) precision; rsatoolbox's `prec_from_unbalanced(
    dataset, 'conditions', dof, method)`, and its `prec_from_measurements`
    for a balanced design given the same dof.
  """
  _check_dtype(dtype)
  _check_method(method)
  n, p, _ = _check_patterns(x, 'patterns')
  cond = _labels(conditions, n, 'conditions')
  _, inverse, counts = np.unique(cond, return_inverse=True, return_counts=True)
  if n - len(counts) < 1:
    raise InputError(
      f'{n} patterns of {len(counts)} conditions leave no residuals: the'
      ' noise from measurements needs repeats of a condition'
    )
  dof = _check_dof(dof, n, p, method, n - len(counts), 'N - C')
  return _precision_any(x, inverse, counts, dof, method, dtype, 'patterns')


# ---------------------------------------------------------------- crossnobis


class _Design(NamedTuple):
  conditions: np.ndarray  # [C] sorted labels
  onehot: np.ndarray  # [F * C, N]: row f * C + c picks condition c in run f
  counts: np.ndarray  # [F, C] patterns of condition c in run f


def _design(conditions, runs, n: int) -> _Design:
  """The folds of `crossnobis` (host): runs=None as rsatoolbox's default
  cv descriptor (the k-th pattern of every condition forms fold k)."""
  cond = _labels(conditions, n, 'conditions')
  values, ci, per = np.unique(cond, return_inverse=True, return_counts=True)
  if len(values) < 2:
    raise InputError(
      f'{len(values)} condition: crossnobis needs >= 2 conditions'
    )
  if runs is None:
    if not np.all(per == per[0]):
      raise InputError(
        f'runs=None needs the same number of patterns per condition (here'
        f' {per.min()} to {per.max()}): pass runs, one label per pattern'
      )
    ri = np.zeros(n, np.int64)
    for c in range(len(values)):
      ri[ci == c] = np.arange(per[0])
    folds = np.arange(per[0])
  else:
    folds, ri = np.unique(_labels(runs, n, 'runs'), return_inverse=True)
  if len(folds) < 2:
    raise InputError(
      f'{len(folds)} run: crossnobis needs >= 2 runs (cross-validation'
      ' folds); pass runs, or repeat each condition'
    )
  f, c = len(folds), len(values)
  counts = np.zeros((f, c), np.int64)
  np.add.at(counts, (ri, ci), 1)
  missing = np.argwhere(counts == 0)
  if len(missing):
    fm, cm = missing[0]
    raise InputError(
      f'condition {values[cm].item()!r} has no pattern in run'
      f' {folds[fm].item()!r} ({len(missing)} such pairs in all): every'
      ' condition needs a pattern in every run'
    )
  onehot = np.zeros((f * c, n), np.float64)
  onehot[ri * c + ci, np.arange(n)] = 1.0
  return _Design(values, onehot, counts)


def _mirror(xp, m):
  """The strict upper triangle of m [..., C, C] mirrored: exactly
  symmetric, exact zero diagonal."""
  u = xp.triu(m, 1)
  return u + xp.swapaxes(u, -1, -2)


def _distances(xp, k):
  """d_ij = K_ii + K_jj - K_ij - K_ji of kernels k [Q, C, C], averaged."""
  dg = xp.diagonal(k, axis1=-2, axis2=-1)
  d = dg[:, :, None] + dg[:, None, :] - k - xp.swapaxes(k, -1, -2)
  return d.mean(0)


def _crossnobis_core(xp, x, noise, onehot, counts, kind: str, remove_mean):
  """The crossnobis RDM [C, C] of x [N, P] (xp numpy or jax.numpy).

  kind: 'none' (W = I), 'diag' (noise [P]), 'full' (noise [P, P]) or
  'folds' (noise [F, P, P]: the precision of each run's mean; the fold
  pairs f < g with W_fg = ((W_f^-1 + W_g^-1) / 2)^-1, rsatoolbox's list of
  noises).
  """
  f, c = counts.shape
  p = x.shape[-1]
  sums = (onehot @ x).reshape(f, c, p)
  test = sums / counts[:, :, None]
  train = (sums.sum(0) - sums) / (counts.sum(0) - counts)[:, :, None]
  if remove_mean:
    test = test - test.mean(-1, keepdims=True)
    train = train - train.mean(-1, keepdims=True)
  # Distances do not change when every condition's pattern of a fold loses
  # the same vector: centred, the kernels cancel less.
  test = test - test.mean(1, keepdims=True)
  train = train - train.mean(1, keepdims=True)
  if kind == 'folds':
    var = xp.linalg.inv(noise)
    i, j = np.triu_indices(f, 1)
    w = xp.linalg.inv((var[i] + var[j]) / 2)
    k = xp.einsum('qcp,qdp->qcd', test[i] @ w, test[j])
  else:
    if kind == 'diag':
      train = train * noise
    elif kind == 'full':
      train = train @ noise
    k = xp.einsum('fcp,fdp->fcd', train, test)
  return _mirror(xp, _distances(xp, k) / p)


@functools.partial(
  jax.jit, static_argnames=('kind', 'remove_mean', 'batched', 'noise_batched')
)
def _crossnobis_program(
  x, noise, onehot, counts, *, kind, remove_mean, batched, noise_batched
):
  """(RDM [..., C, C], non-finite columns [..., P]): one program."""
  with jax.default_matmul_precision('float32'):
    core = functools.partial(
      _crossnobis_core,
      jnp,
      onehot=onehot,
      counts=counts,
      kind=kind,
      remove_mean=remove_mean,
    )
    if batched:
      r = jax.vmap(core, (0, 0 if noise_batched else None))(x, noise)
    else:
      r = core(x, noise)
  return r, _nonfinite_columns(jnp, x)


def _device(a):
  """a as a float32 jax.Array: numpy through `jax.device_put` (a jnp
  conversion would stage an op per call), jax arrays and tracers kept."""
  if isinstance(a, jax.Array | jax.core.Tracer):
    return a if a.dtype == jnp.float32 else a.astype(jnp.float32)
  return jax.device_put(np.asarray(a, np.float32))


def _noise_kind(noise, p: int, f: int, s: int | None) -> tuple[str, object]:
  """('none' | 'diag' | 'full' | 'folds', noise as an array or None)."""
  if noise is None:
    return 'none', None
  if isinstance(noise, list | tuple):
    if isinstance(noise[0], jax.Array | jax.core.Tracer):
      noise = jnp.stack(noise)
    else:
      noise = np.stack([np.asarray(w) for w in noise])
  shape = tuple(getattr(noise, 'shape', np.shape(noise)))
  lead = () if s is None else (s,)
  kinds = {
    lead + (p,): 'diag',
    lead + (p, p): 'full',
    lead + (f, p, p): 'folds',
  }
  if shape not in kinds:
    want = ', '.join(str(list(k)) for k in kinds)
    what = f'{p} channels, {f} runs' + ('' if s is None else f', {s} sets')
    raise InputError(f'noise shape {shape} for {what}: pass one of {want}')
  return kinds[shape], noise


def crossnobis(
  x,
  conditions,
  runs=None,
  noise=None,
  *,
  remove_mean: bool = False,
  dtype: str = 'float32',
) -> CrossvalRdm:
  """Cross-validated Mahalanobis (crossnobis) RDM, leave one run out.

  d_ij = 1 / (F P) sum_f (r_fi - r_fj)^T W (t_fi - t_fj) (module
  docstring): t_fc condition c's mean in run f, r_fc its mean in the
  other runs. Unbiased: may be negative.

  Args:
    x: [N, P] patterns (numpy or jax), or a batch [S, N, P] with the same
      design (searchlight spheres, ROIs, subjects): one compiled program.
    conditions: [N] the condition of each pattern (numbers or strings).
    runs: [N] the run (fold) of each pattern; None: the k-th pattern of
      each condition is fold k (rsatoolbox's default cv descriptor: the
      same number of patterns per condition).
    noise: the precision W: None (the identity: cross-validated squared
      Euclidean over P), [P] a diagonal, [P, P], or [F, P, P] (or a list
      of F [P, P]) the precision of each run's mean, in sorted run order:
      then the fold pairs f < g with W_fg = ((W_f^-1 + W_g^-1) / 2)^-1,
      d_ij = 1 / (Q P) sum_{f<g} (t_fi - t_fj)^T W_fg (t_gi - t_gj), Q the
      number of pairs (rsatoolbox's list of noises). With a batch x, noise
      has the leading S axis too: [S, P], [S, P, P] or [S, F, P, P].
    remove_mean: subtract each mean pattern's mean over channels first
      (rsatoolbox's remove_mean).
    dtype: 'float32' (JAX on the default device; <= 1e-5 max |d| from
      float64 in the tests) or 'float64' (numpy on the host, the reference).

  Returns:
    CrossvalRdm(rdm, conditions): rdm the square [C, C] (or [S, C, C]) RDM,
    symmetric with an exact zero diagonal, as `rdmjax.rsa.rdm.rdm`
    (`rdmjax.rsa.interop.condensed` gives rsatoolbox's condensed vector);
    a jax.Array for float32, numpy for float64; conditions the sorted
    labels, its row order (rsatoolbox's, which sorts by the descriptor).
  """
  _check_dtype(dtype)
  n, p, batched = _check_patterns(x, 'patterns')
  d = _design(conditions, runs, n)
  s = x.shape[0] if batched else None
  kind, noise = _noise_kind(noise, p, d.counts.shape[0], s)
  if dtype == 'float64':
    xs = np.asarray(x, np.float64)
    _raise_nonfinite(_nonfinite_columns(np, xs), 'patterns')
    w = None if noise is None else np.asarray(noise, np.float64)
    counts = d.counts.astype(np.float64)

    def one(xk, wk):
      return _crossnobis_core(np, xk, wk, d.onehot, counts, kind, remove_mean)

    if batched:
      r = np.stack([one(xs[k], None if w is None else w[k]) for k in range(s)])
    else:
      r = one(xs, w)
    return CrossvalRdm(r, d.conditions)
  r, nonfinite = _crossnobis_program(
    _device(x),
    None if noise is None else _device(noise),
    jax.device_put(d.onehot.astype(np.float32)),
    jax.device_put(d.counts.astype(np.float32)),
    kind=kind,
    remove_mean=bool(remove_mean),
    batched=batched,
    noise_batched=batched and noise is not None,
  )
  _raise_nonfinite(nonfinite, 'patterns')
  return CrossvalRdm(r, d.conditions)
