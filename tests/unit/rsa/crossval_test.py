"""rdmjax.rsa.crossval against rsatoolbox: average_by, noise precisions,
crossnobis (and cross-validated Euclidean), the batched device program.

rsatoolbox's crossnobis RDM is the condensed upper triangle of rdmjax's
square one. dtype='float64' (numpy) must equal rsatoolbox to REL64;
the float32 device program must stay within the bounds the module
docstring states (CN32 for distances, PREC32 for precisions), relative to
the largest entry.
"""

import warnings

import compiled
import jax
import numpy as np
import pytest

from rdmjax.errors import InputError
from rdmjax.rsa import crossval as cv
from rdmjax.rsa.interop import condensed

rsatoolbox = pytest.importorskip('rsatoolbox')
from rsatoolbox.data import Dataset, average_dataset_by  # noqa: E402
from rsatoolbox.data import noise as rsa_noise  # noqa: E402
from rsatoolbox.rdm import calc_rdm, calc_rdm_crossnobis  # noqa: E402

REL64 = 1e-10
CN32 = 1e-5
PREC32 = 1e-4
C, R, P = 6, 4, 30
NAMES = np.array(['face', 'house', 'tool', 'body', 'car', 'word'])


def _rel(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.abs(got - want).max() / np.abs(want).max())


def _data(c=C, r=R, p=P, seed=0, offset=5.0, signal=1.0):
  """Patterns of c conditions x r runs in shuffled order: a pattern per
  condition (scale `signal`), correlated noise, a common offset."""
  rng = np.random.default_rng(seed)
  cond = np.tile(np.arange(c), r)
  run = np.repeat(np.arange(r), c) + 1
  order = rng.permutation(c * r)
  cond, run = cond[order], run[order]
  u = signal * rng.standard_normal((c, p))
  mix = np.eye(p) + 0.3 * rng.standard_normal((p, p)) / np.sqrt(p)
  x = u[cond] + rng.standard_normal((c * r, p)) @ mix + offset
  return x, cond, run


def _dataset(x, cond, run):
  return Dataset(x, obs_descriptors={'cond': cond, 'run': run})


def _rsa_crossnobis(x, cond, run, noise=None, **kw):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # its descriptor casts
    r = calc_rdm_crossnobis(
      _dataset(x, cond, run),
      'cond',
      noise=noise,
      cv_descriptor=kw.pop('cv', 'run'),
      **kw,
    )
  return r.dissimilarities[0]


def _both(x, cond, run=None, noise=None, **kw):
  """(float64 condensed, float32 condensed, conditions) of crossnobis."""
  r64 = cv.crossnobis(x, cond, run, noise, dtype='float64', **kw)
  r32 = cv.crossnobis(x, cond, run, noise, **kw)
  assert isinstance(r64.rdm, np.ndarray) and isinstance(r32.rdm, jax.Array)
  np.testing.assert_array_equal(r64.conditions, r32.conditions)
  return condensed(r64.rdm), condensed(np.asarray(r32.rdm)), r64.conditions


def test_average_by_equals_rsatoolbox_in_sorted_order():
  x, cond, _ = _data()
  labels = NAMES[cond]
  means, values, counts = cv.average_by(x, labels)
  np.testing.assert_array_equal(values, np.sort(NAMES))
  ref, ref_values, ref_counts = average_dataset_by(
    Dataset(x, obs_descriptors={'c': labels}), 'c'
  )
  order = np.argsort(ref_values)  # rsatoolbox: first-appearance order
  assert _rel(means, ref[order]) < REL64
  np.testing.assert_array_equal(counts, ref_counts[order])
  m, v, n = cv.average_by(np.arange(6).reshape(3, 2), [2, 1, 2])
  np.testing.assert_array_equal(m, [[2.0, 3.0], [2.0, 3.0]])
  np.testing.assert_array_equal(v, [1, 2])
  np.testing.assert_array_equal(n, [1, 2])


@pytest.mark.parametrize('method', cv.METHODS)
def test_precision_from_residuals_equals_rsatoolbox(method):
  rng = np.random.default_rng(1)
  mix = np.eye(P) + 0.5 * rng.standard_normal((P, P)) / np.sqrt(P)
  e = rng.standard_normal((80, P)) @ mix + 1.0
  for dof in (None, 70):
    want = rsa_noise.prec_from_residuals(e, dof=dof, method=method)
    got = cv.precision_from_residuals(e, dof, method, dtype='float64')
    assert _rel(got, want) < REL64, dof
    got32 = cv.precision_from_residuals(e, dof, method)
    assert got32.shape == (P, P) and got32.dtype == np.float32
    assert _rel(got32, want) < PREC32, dof


@pytest.mark.parametrize('method', cv.METHODS)
def test_precision_from_measurements_equals_rsatoolbox(method):
  runs = 8 if method == 'full' else R  # full: N - C >= P residual dof
  x, cond, run = _data(r=runs)
  ds = _dataset(x, cond, run)
  want = rsa_noise.prec_from_unbalanced(ds, 'cond', method=method)
  assert (
    _rel(
      cv.precision_from_measurements(x, cond, None, method, dtype='float64'),
      want,
    )
    < REL64
  )
  assert (
    _rel(cv.precision_from_measurements(x, cond, method=method), want) < PREC32
  )
  # prec_from_measurements: N - C given, or its own default (C - 1) R.
  n = len(cond)
  want = rsa_noise.prec_from_measurements(ds, 'cond', dof=n - C, method=method)
  got = cv.precision_from_measurements(x, cond, method=method, dtype='float64')
  assert _rel(got, want) < REL64
  want = rsa_noise.prec_from_measurements(ds, 'cond', method=method)
  got = cv.precision_from_measurements(
    x, cond, (C - 1) * runs, method, dtype='float64'
  )
  assert _rel(got, want) < REL64


@pytest.mark.parametrize('noise', ['none', 'full', 'diag'])
def test_crossnobis_equals_rsatoolbox(noise):
  x, cond, run = _data()
  labels = NAMES[cond]
  w = {
    'none': None,
    'full': rsa_noise.prec_from_unbalanced(_dataset(x, cond, run), 'cond'),
    'diag': 1.0 / x.var(0),
  }[noise]
  ref_w = np.diag(w) if noise == 'diag' else w
  want = _rsa_crossnobis(x, labels, run, ref_w)
  r64, r32, conds = _both(x, labels, run, w)
  np.testing.assert_array_equal(conds, np.sort(NAMES))
  assert _rel(r64, want) < REL64
  assert _rel(r32, want) < CN32
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)
    via = calc_rdm(
      _dataset(x, labels, run),
      method='crossnobis',
      descriptor='cond',
      noise=ref_w,
      cv_descriptor='run',
    )
  assert _rel(r64, via.dissimilarities[0]) < REL64


def test_crossvalidated_euclidean_is_the_identity_precision():
  x, cond, run = _data(seed=2)
  r = cv.crossnobis(x, cond, run, dtype='float64').rdm
  np.testing.assert_allclose(
    r, cv.crossnobis(x, cond, run, np.eye(P), dtype='float64').rdm, atol=1e-12
  )
  # By hand: fold f's train means (other runs) against its test means.
  _, cs, _ = cv.average_by(x, cond)
  want = np.zeros((C, C))
  for f in np.unique(run):
    t = cv.average_by(x[run == f], cond[run == f])[0]
    tr = cv.average_by(x[run != f], cond[run != f])[0]
    dt, dr = t[:, None] - t[None], tr[:, None] - tr[None]
    want += np.einsum('ijp,ijp->ij', dr, dt) / P / R
  np.testing.assert_allclose(r, want, atol=1e-12)
  assert np.all(np.diag(r) == 0) and np.all(r == r.T)
  # Unbiased: without condition patterns the distances scatter around 0.
  y, cond, run = _data(seed=2, signal=0.0)
  r = condensed(np.asarray(cv.crossnobis(y, cond, run).rdm))
  assert (r < 0).any() and (r > 0).any()


def test_default_folds_remove_mean_and_unbalanced_runs():
  x, cond, run = _data(seed=3)
  # runs=None: the k-th pattern of each condition (in x's order) is fold k.
  want = _rsa_crossnobis(x, cond, run, cv=None)
  r64, r32, _ = _both(x, cond)
  assert _rel(r64, want) < REL64 and _rel(r32, want) < CN32
  want = _rsa_crossnobis(x, cond, run, remove_mean=True)
  r64, r32, _ = _both(x, cond, run, remove_mean=True)
  assert _rel(r64, want) < REL64 and _rel(r32, want) < CN32
  # Conditions twice in a run: each pattern weighs the same in its mean.
  extra = np.random.default_rng(7).standard_normal((2, P)) + x[:2]
  x2 = np.concatenate([x, extra])
  cond2, run2 = np.append(cond, cond[:2]), np.append(run, [2, 2])
  want = _rsa_crossnobis(x2, cond2, run2)
  r64, r32, _ = _both(x2, cond2, run2)
  assert _rel(r64, want) < REL64 and _rel(r32, want) < CN32


def test_fold_noise_list_equals_rsatoolbox():
  x, cond, run = _data(seed=4)
  ws = [
    rsa_noise.prec_from_residuals(
      np.random.default_rng(k).standard_normal((60, P)), method='shrinkage_eye'
    )
    for k in range(R)
  ]
  want = _rsa_crossnobis(x, cond, run, [w.copy() for w in ws])
  r64, r32, _ = _both(x, cond, run, ws)
  assert _rel(r64, want) < REL64 and _rel(r32, want) < CN32
  # One precision for every fold: the fold pairs give leave-one-run-out.
  same = cv.crossnobis(x, cond, run, [ws[0]] * R, dtype='float64').rdm
  loo = cv.crossnobis(x, cond, run, ws[0], dtype='float64').rdm
  np.testing.assert_allclose(same, loo, rtol=1e-9, atol=1e-12)


def test_batch_is_one_program_equal_to_single_calls_and_float64():
  s, c, r, p = 3, 8, 5, 40
  sets = [_data(c, r, p, seed=10 + k) for k in range(s)]
  x = np.stack([sx[0][np.argsort(sx[1] * 100 + sx[2])] for sx in sets])
  key = np.argsort(sets[0][1] * 100 + sets[0][2])
  cond, run = sets[0][1][key], sets[0][2][key]  # one design for every set
  prec = cv.precision_from_measurements(x, cond)
  assert prec.shape == (s, p, p)
  prec64 = cv.precision_from_measurements(x, cond, dtype='float64')
  assert _rel(prec, prec64) < PREC32
  w0 = np.asarray(prec[0], np.float64)
  diag = 1.0 / x.var(1)
  folds = np.stack([[np.asarray(prec[k])] * r for k in range(s)])
  noises = {  # the batch's noise, rsatoolbox's for set 0
    'none': (None, None),
    'full': (prec, w0),
    'diag': (diag, np.diag(diag[0])),
    'folds': (folds, [w0] * r),
  }
  for name, (noise, rsa_w) in noises.items():
    with compiled.programs() as made:
      batch = cv.crossnobis(x, cond, run, noise).rdm
      assert batch.shape == (s, c, c)
    assert len(made) <= 1, (name, made)
    w = None if noise is None else np.asarray(noise)
    ref = cv.crossnobis(x, cond, run, w, dtype='float64').rdm
    assert _rel(batch, ref) < CN32, name
    want = _rsa_crossnobis(x[0], cond, run, rsa_w)
    assert _rel(condensed(np.asarray(batch[0])), want) < CN32, name
    for k in range(s if name in ('none', 'full') else 0):  # fewer compiles
      one = cv.crossnobis(x[k], cond, run, None if w is None else noise[k])
      np.testing.assert_allclose(
        batch[k], one.rdm, rtol=1e-5, atol=1e-6 * np.abs(ref[k]).max()
      )


def test_repeated_shapes_compile_nothing_and_jit_works():
  x, cond, run = _data(seed=5)
  cv.crossnobis(x, cond, run)
  cv.precision_from_measurements(x, cond)
  y, cond2, run2 = _data(seed=6)
  with compiled.programs() as made:
    r = cv.crossnobis(y, cond2, run2).rdm
    cv.precision_from_measurements(y, cond2)
  assert made == [], made
  f = jax.jit(lambda z: cv.crossnobis(z, cond2, run2).rdm)
  np.testing.assert_allclose(f(y), r, rtol=1e-6, atol=1e-7)


def test_bad_input_is_one_clear_line():
  x, cond, run = _data()
  once = np.unique(cond, return_index=True)[1]  # one pattern per condition
  cases = [
    (lambda: cv.crossnobis(x, cond[:-1], run), 'conditions has shape'),
    (lambda: cv.crossnobis(x, cond, run[:-1]), 'runs has shape'),
    (lambda: cv.crossnobis(x[0], cond, run), r'patterns shape \(30,\)'),
    (lambda: cv.crossnobis(x, cond, np.ones_like(run)), '1 run: crossnobis'),
    (lambda: cv.crossnobis(x, np.zeros_like(cond), run), '>= 2 conditions'),
    (
      lambda: cv.crossnobis(x, cond, np.where(cond == 2, 1, run)),
      'condition 2 has no pattern in run',
    ),
    (lambda: cv.crossnobis(x[1:], cond[1:]), 'same number of patterns'),
    (lambda: cv.crossnobis(x, cond, run, np.eye(P - 1)), 'noise shape'),
    (lambda: cv.crossnobis(x, cond, run, dtype='f16'), 'dtype'),
    (lambda: cv.precision_from_residuals(x, method='ledoit'), 'method'),
    (lambda: cv.precision_from_residuals(x, dof=0), 'dof 0'),
    (
      lambda: cv.precision_from_measurements(x, cond, method='full'),
      'singular',
    ),
    (
      lambda: cv.precision_from_measurements(x[once], cond[once]),
      'no residuals',
    ),
  ]
  for call, match in cases:
    with pytest.raises(InputError, match=match) as e:
      call()
    assert '\n' not in str(e.value), str(e.value)
  bad = x.copy()
  bad[3, [4, 17]] = np.nan
  for dtype in cv.DTYPES:
    with pytest.raises(InputError, match=r'column\(s\) 4, 17 have NaN'):
      cv.crossnobis(bad, cond, run, dtype=dtype)
    with pytest.raises(InputError, match=r'column\(s\) 4, 17 have NaN'):
      cv.precision_from_measurements(bad, cond, dtype=dtype)
  with pytest.raises(InputError, match=r'4, 17 of data set 1 \(1 data sets'):
    cv.crossnobis(np.stack([x, bad]), cond, run)
  flat = x.copy()
  flat[:, 2] = 0.1  # its mean rounds: a few ulps of residuals are left
  flat[:, 5] = 1.0 + cond  # constant within each condition
  for dtype in cv.DTYPES:
    with pytest.raises(InputError, match=r'column\(s\) 2 have no residual'):
      cv.precision_from_residuals(flat, dtype=dtype)
    with pytest.raises(InputError, match=r'column\(s\) 2, 5 have no resid'):
      cv.precision_from_measurements(flat, cond, dtype=dtype)
