"""The model-comparison figure, as rsatoolbox's `vis.plot_model_comparison`.

One bar per model (its score, its interval as an error bar), the noise
ceiling as a grey band across the plot, and above the bars the pairwise
tests in rsatoolbox's 'golan' style (Golan, Raju & Kriegeskorte 2020): one
wing per model that significantly beats others, a dot at that model and a
downward tick at each model it beats, wings stacked in model order.
Significance is Benjamini-Hochberg FDR at q = alpha over the k(k-1)/2 pairs
(`fdr_bh`). Inputs are plain numbers and arrays (picklable for
`report.figures.draw`); `model_comparison_from_result` reads the dict of
`rdmjax.rsa.evaluation.compare_models`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rdmjax.errors import InputError
from rdmjax.report.plots import pyplot, save_figure

BAR_COLOUR = (0.0, 0.4, 0.9)  # rsatoolbox's default blue
CEILING_COLOUR = (0.5, 0.5, 0.5)


def fdr_bh(p, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
  """Benjamini-Hochberg FDR control at level alpha.

  The m finite p-values sorted, p_(1) <= ... <= p_(m): the largest r with
  p_(r) <= r alpha / m, and the r smallest are rejected. NaN entries are
  not tests (never rejected, not counted in m).

  Args:
    p: p-values, any shape, in [0, 1] or NaN.
    alpha: the FDR level q.

  Returns:
    (reject, adjusted): bool and float64 arrays of p's shape; adjusted are
    the BH q-values min_{s >= r} min(1, m p_(s) / s) (NaN where p is), so
    reject == (adjusted <= alpha).
  """
  p = np.asarray(p, np.float64)
  fin = np.isfinite(p)
  if np.any((p[fin] < 0) | (p[fin] > 1)):
    raise InputError('p-values outside [0, 1]')
  if not 0 < alpha < 1:
    raise InputError(f'alpha={alpha}: pass a level in (0, 1)')
  reject = np.zeros(p.shape, bool)
  adjusted = np.full(p.shape, np.nan)
  vals = p[fin]
  m = vals.size
  if m == 0:
    return reject, adjusted
  order = np.argsort(vals, kind='stable')
  ranked = vals[order]
  rank = np.arange(1, m + 1)
  passed = np.nonzero(ranked <= rank * alpha / m)[0]
  rej = np.zeros(m, bool)
  if passed.size:
    rej[order[: passed[-1] + 1]] = True
  q = np.minimum.accumulate((ranked * m / rank)[::-1])[::-1]
  adj = np.empty(m)
  adj[order] = np.minimum(q, 1.0)
  reject[fin], adjusted[fin] = rej, adj
  return reject, adjusted


def significant_pairs(diff_p, alpha: float = 0.05) -> np.ndarray:
  """[k, k] bool, symmetric: the model pairs whose difference passes
  Benjamini-Hochberg FDR at alpha, the family being the k(k-1)/2 pairs of
  the upper triangle (NaN p: not a test, never significant).

  Args:
    diff_p: [k, k] symmetric two-sided p-values (the diagonal is ignored).
  """
  p = np.asarray(diff_p, np.float64)
  if p.ndim != 2 or p.shape[0] != p.shape[1]:
    raise InputError(f'diff_p shape {p.shape}: pass a [k, k] matrix')
  k = p.shape[0]
  iu = np.triu_indices(k, 1)
  up, lo = p[iu], p.T[iu]
  same = (up == lo) | (np.isnan(up) & np.isnan(lo))
  if not np.all(same | np.isclose(up, lo, rtol=1e-9, atol=1e-12)):
    raise InputError('diff_p is not symmetric: pass p[a, b] == p[b, a]')
  reject, _ = fdr_bh(up, alpha)
  out = np.zeros((k, k), bool)
  out[iu] = reject
  return out | out.T


def golan_wings(significant, values) -> list[tuple[int, list[int], list[int]]]:
  """The wings of rsatoolbox's 'golan' plot (its version 3), in model order.

  Model i has a wing if it significantly beats another (values[i] >
  values[j]); a significant pair without an order (equal values, or one of
  them NaN) is drawn on the wing of its first model, as an open circle.
  Every significant pair is thus on exactly one wing.

  Args:
    significant: [k, k] bool, symmetric (`significant_pairs`).
    values: [k] the models' scores, in the same (plotted) order.

  Returns:
    [(i, beaten, unordered)]: model i, the models it beats, the models it
    differs from without an order; only models with either.
  """
  sig = np.asarray(significant, bool)
  v = np.asarray(values, np.float64)
  k = v.size
  out = []
  for i in range(k):
    beaten, unordered = [], []
    for j in range(k):
      if j == i or not sig[i, j]:
        continue
      if np.isfinite(v[i]) and np.isfinite(v[j]) and v[i] != v[j]:
        if v[i] > v[j]:
          beaten.append(j)
      elif i < j:
        unordered.append(j)
    if beaten or unordered:
      out.append((i, beaten, unordered))
  return out


def _floats(name: str, x, k: int) -> np.ndarray:
  """x as [k] float64 (None: all NaN); an InputError on another length."""
  if x is None:
    return np.full(k, np.nan)
  a = np.asarray(
    [np.nan if e is None else e for e in np.ravel(np.asarray(x, object))],
    np.float64,
  )
  if a.size != k:
    raise InputError(f'{name}: {a.size} values for {k} models')
  return a


def _scalar(x) -> float:
  return float('nan') if x is None else float(x)


def _order(values: np.ndarray, sort) -> np.ndarray:
  """Plot order: sort True or 'descending' (best first), 'ascending', or
  False (as given); NaN scores last, ties in the given order."""
  if sort is True:
    sort = 'descending'
  if sort is False or sort is None or sort == 'unsorted':
    return np.arange(values.size)
  if not isinstance(sort, str) or not (
    'descend' in sort.lower() or 'ascend' in sort.lower()
  ):
    raise InputError(
      f'sort={sort!r}: pass True, False, "descending" or "ascending"'
    )
  key = -values if 'descend' in sort.lower() else values
  return np.argsort(np.where(np.isfinite(key), key, np.inf), kind='stable')


def _over_text(over: str | None) -> str:
  if not over:
    return ''
  return 'images and subjects' if over == 'both' else str(over)


def _note(over, n_boot, level, alpha, n_tests, n_sig, test) -> str:
  """The inference, in two lines: the intervals, then the pair tests."""
  first = []
  if over:
    first.append(f'bootstrap over {_over_text(over)}')
  if n_boot:
    first.append(f'{int(n_boot)} draws')
  if level is not None and np.isfinite(level):
    first.append(f'{100 * float(level):g}% intervals')
  lines = [', '.join(first)] if first else []
  if n_tests:
    lines.append(
      f'pairs: {test}, FDR (Benjamini-Hochberg) q < {alpha:g}: '
      f'{n_sig} of {n_tests} significant'
    )
  return '\n'.join(lines)


def _wing_height(wings) -> float:
  return 0.35 + 0.22 * len(wings)


def _xlim(k: int) -> tuple[float, float]:
  """At least three bars' room: one or two bars are not drawn as wide as
  the plot."""
  pad = 0.6 + max(0, 3 - k) / 2
  return -pad, k - 1 + pad


def _draw_wings(ax, wings, k: int) -> None:
  """Golan wings: a dot at the winner, a downward tick at each model it
  beats (an open circle where the pair has no order), one line across;
  wing r at height r + 1."""
  for r, (i, beaten, unordered) in enumerate(wings):
    y = r + 1
    ends = [i, *beaten, *unordered]
    ax.plot(
      (min(ends), max(ends)),
      (y, y),
      '-',
      color='k',
      lw=1.5,
      zorder=1,
      label=f'_wing {i}',
    )
    ax.plot(i, y, 'o', color='k', ms=5, zorder=2, label=f'_anchor {i}')
    for j in beaten:
      ax.plot(
        (j, j), (y, y - 0.35), '-', color='k', lw=1.5, label=f'_beats {i} {j}'
      )
    for j in unordered:
      ax.plot(
        j, y, 'o', mfc='w', mec='k', ms=5, zorder=2, label=f'_differs {i} {j}'
      )
  ax.set_ylim(0.3, len(wings) + 0.7)
  ax.set_xlim(*_xlim(k))
  ax.set_axis_off()


def _model_comparison(
  names,
  values,
  low,
  high,
  ceiling_lower,
  ceiling_upper,
  diff_p,
  *,
  method,
  over,
  n_boot,
  level,
  alpha,
  title,
  sort,
  test,
  ylabel,
):
  """The figure (not saved) and the plotted order of the models."""
  names = [str(n) for n in names]
  k = len(names)
  if k == 0:
    raise InputError('no models: pass at least one name')
  v = _floats('values', values, k)
  lo = _floats('low', low, k)
  hi = _floats('high', high, k)
  if diff_p is not None:
    p = np.asarray(diff_p, np.float64)
    if p.shape != (k, k):
      raise InputError(
        f'diff_p shape {p.shape}: pass [{k}, {k}] for {k} models'
      )
    sig = significant_pairs(p, alpha)
  else:
    sig = np.zeros((k, k), bool)
  order = _order(v, sort)
  names = [names[i] for i in order]
  v, lo, hi = v[order], lo[order], hi[order]
  sig = sig[np.ix_(order, order)]
  wings = golan_wings(sig, v) if diff_p is not None else []
  n_tests = 0
  if diff_p is not None:
    iu = np.triu_indices(k, 1)
    n_tests = int(np.isfinite(p[iu]).sum())
  n_sig = int(np.triu(sig, 1).sum())
  c_lo, c_hi = _scalar(ceiling_lower), _scalar(ceiling_upper)

  plt = pyplot()
  long = max(len(n) for n in names)
  rotate = k > 6 or long * k > 48
  width = max(5.0, 1.4 + (0.32 if rotate else 0.55) * k)
  label_h = 0.07 * min(long, 40) if rotate else 0.2
  bars_h = 3.2
  if wings:
    wh = _wing_height(wings)
    fig, (axw, ax) = plt.subplots(
      2,
      1,
      figsize=(width, bars_h + wh + label_h + 0.9),
      layout='constrained',
      height_ratios=(wh, bars_h),
    )
    _draw_wings(axw, wings, k)
  else:
    fig, ax = plt.subplots(
      figsize=(width, bars_h + label_h + 0.9), layout='constrained'
    )
  x = np.arange(k)
  fin = np.isfinite(v)
  ax.bar(x[fin], v[fin], 0.7, color=BAR_COLOUR, zorder=2, label='_bars')
  has_ci = np.isfinite(lo) & np.isfinite(hi)
  if has_ci.any():
    ax.vlines(
      x[has_ci],
      lo[has_ci],
      hi[has_ci],
      color='k',
      lw=2,
      zorder=3,
      label='_intervals',
    )
  for i in np.nonzero(~fin)[0]:
    ax.text(i, 0, 'n/a', ha='center', va='bottom', fontsize=7, color='0.4')
  ax.axhline(0, color='k', lw=0.6, zorder=2)
  band = [c for c in (c_lo, c_hi) if np.isfinite(c)]
  if len(band) == 2:
    ax.axhspan(
      min(band),
      max(band),
      color=CEILING_COLOUR,
      alpha=0.3,
      lw=0,
      zorder=4,
      label='noise ceiling',
    )
  elif band:
    ax.axhline(
      band[0], color=CEILING_COLOUR, lw=2, zorder=4, label='noise ceiling'
    )
  tops = [a for a in (*v, *lo, *hi, *band) if np.isfinite(a)]
  ymin = min([0.0, *tops])
  ymax = max([0.0, *tops])
  if ymax - ymin <= 0:
    ymax = ymin + 1.0
  pad = 0.06 * (ymax - ymin)
  ax.set_ylim(ymin - (pad if ymin < 0 else 0), ymax + pad)
  ax.set_xlim(*_xlim(k))
  ax.set_xticks(x)
  if rotate:
    ax.set_xticklabels(
      names, rotation=45, ha='right', rotation_mode='anchor', fontsize=7
    )
  else:
    ax.set_xticklabels(names, fontsize=8)
  ax.set_ylabel(ylabel or f'RDM similarity ({method})', fontsize=8)
  ax.tick_params(axis='y', labelsize=7)
  ax.spines[['top', 'right']].set_visible(False)
  if band:
    ax.legend(
      fontsize=7,
      frameon=False,
      loc='lower right',
      bbox_to_anchor=(1.0, 1.0),
      borderaxespad=0.1,
    )
  note = _note(over, n_boot, level, alpha, n_tests, n_sig, test)
  if note:
    fig.supxlabel(note, fontsize=7, color='0.3')
  fig.suptitle(title or 'model comparison', fontsize=10)
  return fig, order


def model_comparison_figure(
  names: Sequence[str],
  values,
  low=None,
  high=None,
  ceiling_lower: float | None = None,
  ceiling_upper: float | None = None,
  diff_p=None,
  path: Path = Path('model_comparison.png'),
  *,
  method: str = 'spearman',
  over: str | None = 'images',
  n_boot: int | None = None,
  level: float | None = 0.95,
  alpha: float = 0.05,
  title: str | None = None,
  sort: bool | str = True,
  test: str = 'two-sided tests',
  ylabel: str | None = None,
) -> Path:
  """Bar plot of model scores with intervals, the noise ceiling and the
  significant pairwise differences (rsatoolbox's plot_model_comparison
  with test_pair_comparisons='golan', multiple_pair_testing='fdr').

  Args:
    names: the k models' names.
    values: [k] scores (NaN: drawn as missing, 'n/a').
    low, high: [k] interval bounds (None or NaN: no error bar).
    ceiling_lower, ceiling_upper: the noise ceiling's bounds, drawn as a
      grey band across the plot (None or NaN: none; one of them: a line).
    diff_p: [k, k] symmetric two-sided p-values of the pairwise differences
      (NaN on the diagonal; NaN elsewhere: not tested), or None for no
      pairwise tests. Pairs significant at FDR q = alpha (Benjamini-
      Hochberg over the k(k-1)/2 pairs, `fdr_bh`) are drawn as golan wings
      above the bars (`golan_wings`).
    path: the PNG to write (through `report.plots.save_figure`).
    method: the comparison method, for the y label 'RDM similarity (...)'.
    over, n_boot, level: the inference, for the note under the plot
      ('bootstrap over images, 1000 draws, 95% intervals'); None to leave
      each out.
    alpha: the FDR level.
    title: the figure's title (default 'model comparison').
    sort: True or 'descending' (best first, NaN last), 'ascending', False
      (as given).
    test: how diff_p was computed, for the note.
    ylabel: replaces the y label.

  Returns:
    The path written.
  """
  fig, _ = _model_comparison(
    names,
    values,
    low,
    high,
    ceiling_lower,
    ceiling_upper,
    diff_p,
    method=method,
    over=over,
    n_boot=n_boot,
    level=level,
    alpha=alpha,
    title=title,
    sort=sort,
    test=test,
    ylabel=ylabel,
  )
  return save_figure(fig, path)


def _get(d, key):
  """d[key]['value'] or d[key] (a number), None where absent."""
  got = d.get(key) if isinstance(d, Mapping) else None
  if isinstance(got, Mapping):
    return got.get('value')
  return got


def model_comparison_arrays(result: Mapping) -> dict:
  """The arguments of `model_comparison_figure` from a `compare_models`
  result: {'names', 'values', 'low', 'high', 'ceiling_lower',
  'ceiling_upper', 'diff_p', 'method', 'over', 'n_boot', 'level'}, plain
  lists and floats.

  Reads result['models'], ['scores'][model]['value', 'low', 'high'],
  ['noise_ceiling'] ({'lower': {'value', ...}, 'upper': {...}} or None),
  ['diff_p'] ([k, k]; or under ['differences']['diff_p']), ['method'],
  ['over'], ['n_boot'], ['level'].
  """
  names = [str(m) for m in result['models']]
  scores = result['scores']
  k = len(names)

  def col(key):
    return [
      float('nan') if scores[m].get(key) is None else float(scores[m][key])
      for m in result['models']
    ]

  nc = result.get('noise_ceiling') or {}
  diff_p = result.get('diff_p')
  diffs = result.get('differences')
  if diff_p is None and isinstance(diffs, Mapping):
    diff_p = diffs.get('diff_p')
  if diff_p is not None:
    diff_p = np.asarray(diff_p, np.float64).reshape(k, k)
  lower, upper = _get(nc, 'lower'), _get(nc, 'upper')
  return {
    'names': names,
    'values': col('value'),
    'low': col('low'),
    'high': col('high'),
    'ceiling_lower': None if lower is None else float(lower),
    'ceiling_upper': None if upper is None else float(upper),
    'diff_p': diff_p,
    'method': str(result.get('method', 'spearman')),
    'over': result.get('over'),
    'n_boot': result.get('n_boot'),
    'level': result.get('level'),
  }


def model_comparison_from_result(
  result: Mapping, path: Path = Path('model_comparison.png'), **kw
) -> Path:
  """`model_comparison_figure` of a `rdmjax.rsa.evaluation.compare_models`
  result (`model_comparison_arrays`); kw: its keyword options (alpha,
  title, sort, ...). For `report.figures.draw`, pass
  `model_comparison_figure` the arrays instead (plain, picklable)."""
  args = model_comparison_arrays(result)
  names = args.pop('names')
  kw = {'test': 'two-sided t tests', **args, **kw}
  return model_comparison_figure(names, path=path, **kw)
