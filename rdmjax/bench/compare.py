"""Model comparison: rdmjax beside rsatoolbox on the same RDMs, same run.

  rdmjax --mode=bench --workdir=DIR --config=configs/bench.py:suite=compare
  rdmjax --mode=bench --workdir=DIR --config=configs/bench.py:suite=compare,tiny

k model RDMs against the RDMs of n_subjects subjects at each n of
`bench.compare.sizes` images: condensed random RDMs sharing one structure
(every subject is it plus noise, model i is w_i times it plus noise, w
falling with i), float32, and the same values as float64 (each
`bench.compare.dtypes`). Spearman throughout. One figure per n, dtype and
what was measured:

  compare        rdmjax.rsa.compare.compare_rdms(models, subjects) ([k, S])
                 vs rsatoolbox.rdm.compare; `max_abs_diff` of the matrices.
  noise_ceiling  rdmjax.rsa.group.noise_ceiling vs
                 rsatoolbox.inference.boot_noise_ceiling; `max_abs_diff` of
                 the two bounds.
  bootstrap      compare_models(models, subjects, over='images', n_boot)
                 (rdmjax.rsa.inference, else rdmjax.rsa.evaluation; a row
                 with status 'missing' where neither has it) vs
                 rsatoolbox.inference.eval_bootstrap_pattern over ModelFixed
                 models (its default noise ceiling per draw included), run
                 on a few draws and scaled linearly to n_boot
                 (`scaled_from`: those draws). `max_abs_diff`: the point
                 estimates (model scores and ceiling bounds on the original
                 images) against rsatoolbox's compare and ceiling; the
                 draws themselves differ (other random images).

rdmjax times: `time_fn` (`rdmjax_s` its median after a first call;
`rdmjax_first_s` the first, compilation included). rsatoolbox runs on the
float64 values (it computes in float64 whatever it is given), once per n
and timed once (minutes at n = 10000; no compilation to exclude); its
figures stand beside each dtype's rdmjax row. `ratio` is rsatoolbox_s /
rdmjax_s (> 1: rdmjax faster).

rsatoolbox's bootstrap: with `rsa_draws` 0 (default) two draws are timed
(its least: it fails on one), then as many as fit in `rsa_budget_s` (at
most `rsa_max_draws`). Where the two draws would take over `rsa_probe_max_s`
by the per-draw time of a smaller n of this run scaled by pairs, they are
not run: the row gives that estimate (`rsatoolbox_estimated`,
`estimated_from_n`). rsatoolbox is left out where 'rsatoolbox' is not in
`bench.baselines` (`fast`) or not installed.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from rdmjax.bench import time_fn
from rdmjax.errors import InputError
from rdmjax.rsa import compare as compare_lib
from rdmjax.rsa import group

METHOD = 'spearman'
# config.bench.compare's fields (configs/bench.py sets them for
# suite=compare); these where a config has no such section.
DEFAULTS = dict(
  sizes=(1000, 10000),
  k=4,
  n_subjects=8,
  n_boot=1000,
  dtypes=('float32', 'float64'),
  seed=0,
  boot_repeats=1,
  # The bootstrap rows: at these sizes only (its draws' constants are
  # ~10 bytes x 7 vectors per pair: 10000 images need ~20 GB of host
  # memory), for these input dtypes (the draws are the same for both).
  boot_sizes=(1000,),
  boot_dtypes=('float32',),
  rsa_draws=0,
  rsa_budget_s=60.0,
  rsa_max_draws=20,
  rsa_probe_max_s=600.0,
)
# Where compare_models is looked for, in order.
COMPARE_MODELS = ('rdmjax.rsa.inference', 'rdmjax.rsa.evaluation')


def settings(config) -> dict[str, Any]:
  """config.bench.compare over DEFAULTS, as plain values."""
  got = config.bench.get('compare', None)
  got = got.to_dict() if hasattr(got, 'to_dict') else dict(got or {})
  out = dict(DEFAULTS, **got)
  out['sizes'] = tuple(int(n) for n in out['sizes'])
  out['dtypes'] = tuple(str(d) for d in out['dtypes'])
  out['boot_sizes'] = tuple(int(n) for n in out['boot_sizes'])
  out['boot_dtypes'] = tuple(str(d) for d in out['boot_dtypes'])
  bad = [d for d in out['dtypes'] if d not in ('float32', 'float64')]
  if bad:
    raise InputError(f'bench.compare.dtypes {bad}: use float32 and/or float64')
  return out


def make_rdms(
  n: int, k: int, n_subjects: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Condensed float32 RDMs sharing one structure: ([k, m] models,
  [n_subjects, m] subjects), m = n(n-1)/2.

  Subject s is shared + noise; model i is w_i shared + noise, w from 1.5
  down to 0.25 (models that fit less and less). Made in place, one [m]
  temporary at most.
  """
  m = n * (n - 1) // 2
  rng = np.random.default_rng(seed)
  shared = rng.standard_normal(m, dtype=np.float32)
  subjects = rng.standard_normal((n_subjects, m), dtype=np.float32)
  subjects += shared
  models = rng.standard_normal((k, m), dtype=np.float32)
  for i, w in enumerate(np.linspace(1.5, 0.25, k) if k > 1 else [1.0]):
    models[i] += np.float32(w) * shared
  return models, subjects


def find_compare_models() -> tuple[Callable | None, str | None]:
  """(compare_models, 'module.compare_models') or (None, None)."""
  for name in COMPARE_MODELS:
    try:
      module = importlib.import_module(name)
    except ImportError:
      continue
    fn = getattr(module, 'compare_models', None)
    if fn is not None:
      return fn, f'{name}.compare_models'
  return None, None


def _once(fn: Callable, *args) -> tuple[float, Any]:
  """(seconds, output) of one call: the host baselines that take minutes."""
  t0 = time.perf_counter()
  out = fn(*args)
  return time.perf_counter() - t0, out


def _kept(fn: Callable) -> tuple[Callable, dict]:
  """fn, and a dict where each call leaves its output ('out')."""
  box: dict = {}

  def run(*args):
    box['out'] = fn(*args)
    return box['out']

  return run, box


def _ratio(a, b) -> float | None:
  return None if a is None or b is None or b <= 0 else a / b


class _Rsa:
  """rsatoolbox's side at one n: objects, values and times."""

  def __init__(self, models64, subjects64, names, subjects_names):
    import rsatoolbox  # optional (the bench and test extras)

    self.rsa = rsatoolbox
    self.data = rsatoolbox.rdm.RDMs(
      subjects64, rdm_descriptors={'name': list(subjects_names)}
    )
    self.model_rdms = rsatoolbox.rdm.RDMs(
      models64, rdm_descriptors={'name': list(names)}
    )
    self.models = [
      rsatoolbox.model.ModelFixed(name, models64[i])
      for i, name in enumerate(names)
    ]

  def compare(self) -> tuple[float, np.ndarray]:
    return _once(
      lambda: np.asarray(
        self.rsa.rdm.compare(self.model_rdms, self.data, METHOD), np.float64
      )
    )

  def ceiling(self) -> tuple[float, tuple[float, float]]:
    t, (lo, up) = _once(
      lambda: self.rsa.inference.boot_noise_ceiling(self.data, method=METHOD)
    )
    return t, (float(lo), float(up))

  def bootstrap(self, draws: int) -> float:
    """Seconds of eval_bootstrap_pattern with `draws` draws."""
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # covariances of a few draws
      t, _ = _once(
        lambda: self.rsa.inference.eval_bootstrap_pattern(
          self.models, self.data, method=METHOD, N=int(draws)
        )
      )
    return t


def _rsa_bootstrap(rsa: _Rsa, s: dict, n: int, per_draw: dict) -> dict:
  """rsatoolbox's bootstrap timed on a few draws, scaled to n_boot; or an
  estimate from a smaller n's per-draw time scaled by pairs (`per_draw`:
  n -> seconds a draw, filled here)."""
  n_boot = int(s['n_boot'])
  fixed = int(s['rsa_draws'])
  smaller = [n0 for n0 in per_draw if n0 < n]
  if not fixed and smaller:
    n0 = max(smaller)
    guess = per_draw[n0] * (n * (n - 1)) / (n0 * (n0 - 1))
    if 2 * guess > float(s['rsa_probe_max_s']):
      return dict(
        rsatoolbox_s=guess * n_boot,
        rsatoolbox_estimated=True,
        estimated_from_n=n0,
        rsatoolbox_per_draw_s=guess,
        scaled_from=None,
      )
  draws = max(2, fixed)
  t = rsa.bootstrap(draws)
  if not fixed:
    fit = int(float(s['rsa_budget_s']) * draws / t) if t > 0 else draws
    more = min(int(s['rsa_max_draws']), fit)
    if more > draws:
      draws, t = more, rsa.bootstrap(more)
  per_draw[n] = t / draws
  return dict(
    rsatoolbox_s=t / draws * n_boot,
    rsatoolbox_estimated=False,
    rsatoolbox_draws_s=t,
    rsatoolbox_per_draw_s=t / draws,
    scaled_from=draws,
  )


def _rdmjax_times(t: dict) -> dict:
  return dict(
    rdmjax_s=t['median_s'], rdmjax_first_s=t['first_s'], rdmjax_times=t['times']
  )


def _has_rsatoolbox(config) -> bool:
  return (
    'rsatoolbox' in tuple(config.bench.get('baselines', ('rsatoolbox',)))
    and importlib.util.find_spec('rsatoolbox') is not None
  )


def run(config) -> Iterator[dict[str, Any]]:
  """Per n: compare and noise_ceiling rows per dtype, then bootstrap rows
  per dtype (rsatoolbox's side measured before each group's rows)."""
  s = settings(config)
  reps = int(config.bench.get('repeats', 3))
  k, n_s, n_boot = int(s['k']), int(s['n_subjects']), int(s['n_boot'])
  use_rsa = _has_rsatoolbox(config)
  boot_fn, boot_impl = find_compare_models()
  names = [f'model{i}' for i in range(k)]
  subj_names = [f'subj{i + 1:02d}' for i in range(n_s)]
  per_draw: dict[int, float] = {}
  for n in s['sizes']:
    m = n * (n - 1) // 2
    models32, subjects32 = make_rdms(n, k, n_s, int(s['seed']))
    models64 = models32.astype(np.float64)
    subjects64 = subjects32.astype(np.float64)
    arrays = {
      'float32': (models32, subjects32),
      'float64': (models64, subjects64),
    }
    base = dict(suite='compare', method=METHOD, n=n, m=m, k=k, n_subjects=n_s)
    rsa = _Rsa(models64, subjects64, names, subj_names) if use_rsa else None
    rsa_cmp = rsa.compare() if rsa else (None, None)
    rsa_nc = rsa.ceiling() if rsa else (None, None)
    if n not in s['boot_sizes']:
      rsa = None  # its float64 copies are not needed again: memory
      gc.collect()
    inputs = {}
    for dtype in s['dtypes']:
      mod, sub = arrays[dtype]
      mods = dict(zip(names, mod))
      subs = dict(zip(subj_names, sub))
      inputs[dtype] = (mods, subs)
      row = dict(base, dtype=dtype, rsatoolbox_dtype='float64')
      fn, box = _kept(compare_lib.compare_rdms)
      t = time_fn(fn, mods, subs, METHOD, repeats=reps)
      got = np.asarray(box['out'], np.float64)
      diff = None if rsa_cmp[1] is None else np.abs(got - rsa_cmp[1]).max()
      yield dict(
        row,
        what='compare',
        **_rdmjax_times(t),
        rsatoolbox_s=rsa_cmp[0],
        ratio=_ratio(rsa_cmp[0], t['median_s']),
        max_abs_diff=None if diff is None else float(diff),
      )
      fn, box = _kept(group.noise_ceiling)
      t = time_fn(fn, subs, METHOD, repeats=reps)
      nc = box['out']
      diff = None
      if rsa_nc[1] is not None:
        diff = max(
          abs(nc['lower'] - rsa_nc[1][0]), abs(nc['upper'] - rsa_nc[1][1])
        )
      yield dict(
        row,
        what='noise_ceiling',
        **_rdmjax_times(t),
        lower=nc['lower'],
        upper=nc['upper'],
        rsatoolbox_s=rsa_nc[0],
        ratio=_ratio(rsa_nc[0], t['median_s']),
        max_abs_diff=diff,
      )
    if n not in s['boot_sizes']:
      yield dict(
        base,
        what='bootstrap',
        status='skipped',
        error=f'n={n} not in bench.compare.boot_sizes {s["boot_sizes"]}',
      )
      del models32, subjects32, models64, subjects64, arrays, inputs, rsa
      continue
    rsa_boot = _rsa_bootstrap(rsa, s, n, per_draw) if rsa else {}
    for dtype in s['boot_dtypes']:
      if dtype not in inputs:
        continue
      mods, subs = inputs[dtype]
      row = dict(
        base,
        dtype=dtype,
        rsatoolbox_dtype='float64',
        what='bootstrap',
        over='images',
        n_boot=n_boot,
        impl=boot_impl,
        **rsa_boot,
      )
      row.setdefault('rsatoolbox_s', None)
      row.setdefault('scaled_from', None)
      if boot_fn is None:
        yield dict(
          row,
          status='missing',
          rdmjax_s=None,
          ratio=None,
          max_abs_diff=None,
          error=f'compare_models not in {" or ".join(COMPARE_MODELS)}',
        )
        continue
      fn, box = _kept(
        lambda mods, subs: boot_fn(
          mods, subs, method=METHOD, over='images', n_boot=n_boot
        )
      )
      try:
        if int(s['boot_repeats']) > 0:
          t = time_fn(fn, mods, subs, repeats=int(s['boot_repeats']))
        else:  # one call, compiles included
          once, _ = _once(fn, mods, subs)
          t = dict(first_s=once, median_s=once, min_s=once, times=[once])
      except Exception as e:  # noqa: BLE001 (one row says why; others go on)
        yield dict(
          row,
          status='error',
          rdmjax_s=None,
          ratio=None,
          max_abs_diff=None,
          error=f'{type(e).__name__}: {e}'.splitlines()[0][:300],
        )
        continue
      yield dict(
        row,
        status='measured',
        **_rdmjax_times(t),
        ratio=_ratio(row['rsatoolbox_s'], t['median_s']),
        max_abs_diff=_point_diff(box['out'], names, rsa_cmp[1], rsa_nc[1]),
      )
    del models32, subjects32, models64, subjects64, arrays, inputs, rsa


def _point_diff(result, names, rsa_cmp, rsa_nc) -> float | None:
  """max |difference| of compare_models' point estimates (model scores,
  ceiling bounds) from rsatoolbox's compare (mean over subjects) and
  boot_noise_ceiling on the same data; None without rsatoolbox or keys."""
  if rsa_cmp is None:
    return None
  try:
    scores = result['scores']
    got = np.array([scores[m]['value'] for m in names], np.float64)
    diffs = list(np.abs(got - rsa_cmp.mean(1)))
    nc = result.get('noise_ceiling')
    if nc and rsa_nc is not None:
      diffs += [
        abs(nc['lower']['value'] - rsa_nc[0]),
        abs(nc['upper']['value'] - rsa_nc[1]),
      ]
  except (KeyError, TypeError, IndexError):
    return None
  return float(max(diffs))
