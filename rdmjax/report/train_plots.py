"""Training figures: learning curves, predicted vs true test RDMs, scatter.

matplotlib with the Agg backend; every function writes a PNG (and its vector
copy, `plots.save_figure`) and returns the PNG's path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rdmjax import paths
from rdmjax.report import figures
from rdmjax.report.plots import ceiling_lines, pyplot, save_figure


def learning_curves(runs: dict[str, list[dict]], path: Path) -> Path:
  """Training loss and validation Spearman per step, one line per run.

  Args:
    runs: run name -> metrics.jsonl rows.
    path: the PNG to write.
  """
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout='constrained')
  for name, rows in runs.items():
    s = [r['step'] for r in rows]
    axes[0].plot(s, [r['loss'] for r in rows], label=name)
    ev = [r for r in rows if 'val_spearman' in r]
    axes[1].plot(
      [r['step'] for r in ev],
      [r['val_spearman'] for r in ev],
      marker='o',
      label=name,
    )
  axes[0].set(xlabel='step', ylabel='training loss', yscale='log')
  axes[1].set(xlabel='step', ylabel='validation Spearman')
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  return save_figure(fig, path)


def rdm_side_by_side(
  true: np.ndarray, pred: np.ndarray, test: dict, path: Path
) -> Path:
  """True and predicted RDMs of the test images (the study's Table 3).

  Args:
    true: [m, m] true dissimilarities (diagonal 0).
    pred: [m, m] predictions (diagonal left 0).
    test: metrics with 'r2' and 'spearman'.
    path: the PNG to write.
  """
  plt = pyplot()
  m = true.shape[0]
  off = ~np.eye(m, dtype=bool)
  lo, hi = np.percentile(true[off], [1, 99]) if m > 1 else (0.0, 1.0)
  fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.2), layout='constrained')
  for ax, mat, title in (
    (axes[0], true, f'ground truth ({m} test images)'),
    (
      axes[1],
      pred,
      f'predicted: R$^2$ = {test["r2"]:.3f}, Spearman = {test["spearman"]:.3f}',
    ),
  ):
    im = ax.imshow(np.where(off, mat, np.nan), vmin=lo, vmax=hi, cmap='viridis')
    ax.set_title(title, fontsize=9)
    ax.set_xlabel('test image')
    ax.set_ylabel('test image')
  fig.colorbar(im, ax=axes, shrink=0.8, label='dissimilarity')
  return save_figure(fig, path)


def scatter(
  pred: np.ndarray, true: np.ndarray, test: dict, path: Path, n: int = 20000
) -> Path:
  """Predicted vs true dissimilarity of test pairs (a subsample of n)."""
  plt = pyplot()
  pred, true = np.asarray(pred), np.asarray(true)
  if pred.size > n:
    keep = np.random.default_rng(0).choice(pred.size, n, replace=False)
    pred, true = pred[keep], true[keep]
  fig, ax = plt.subplots(figsize=(4.4, 4.2), layout='constrained')
  ax.scatter(true, pred, s=3, alpha=0.3, lw=0)
  lo = float(min(true.min(), pred.min())) if true.size else 0.0
  hi = float(max(true.max(), pred.max())) if true.size else 1.0
  ax.plot([lo, hi], [lo, hi], color='k', lw=0.8, ls='--')
  ax.set(
    xlabel='true dissimilarity',
    ylabel='predicted',
    title=f'test pairs: Pearson {test["pearson"]:.3f}, '
    f'Spearman {test["spearman"]:.3f}',
  )
  ax.title.set_fontsize(9)
  return save_figure(fig, path)


def test_figures(
  mats: dict, test: dict, folder: Path, prefix: str = 'train'
) -> dict[str, str]:
  """Both test figures; returns name -> path relative to the workdir."""
  folder = paths.path(folder)
  a = figures.draw(
    rdm_side_by_side,
    mats['true'],
    mats['pred'],
    test,
    folder / f'{prefix}_test_rdms.png',
  )
  b = figures.draw(
    scatter,
    mats['pred_pairs'],
    mats['true_pairs'],
    test,
    folder / f'{prefix}_test_scatter.png',
  )
  return {
    'test_rdms': f'{folder.name}/{a.name}',
    'test_scatter': f'{folder.name}/{b.name}',
  }


def score_intervals(runs: dict[str, dict], labels: dict, path: Path) -> Path:
  """Test Spearman of the model and each baseline with its 95% interval,
  one marker colour per run (image-disjoint, leaked).

  Args:
    runs: run name -> name -> stat -> {value, low, high}
      (`rdmjax.training.scoring.test_scores`'s 'scores').
    labels: name -> label.
    path: the PNG to write.
  """
  plt = pyplot()
  names = [k for k in labels if any(k in r for r in runs.values())]
  fig, ax = plt.subplots(
    figsize=(7, 0.55 * len(names) + 1.2), layout='constrained'
  )
  step = 0.8 / max(1, len(runs))
  for k, (run, scores) in enumerate(runs.items()):
    ys, xs, lo, hi = [], [], [], []
    for y, name in enumerate(names):
      s = scores.get(name, {}).get('spearman')
      if s is None or s.get('value') is None:
        continue
      ys.append(y - 0.4 + step * (k + 0.5))
      xs.append(s['value'])
      lo.append(s['value'] - s['low'])
      hi.append(s['high'] - s['value'])
    ax.errorbar(xs, ys, xerr=[lo, hi], fmt='o', capsize=3, label=run)
  ax.set_yticks(range(len(names)), [labels[n] for n in names])
  ax.invert_yaxis()
  ax.axvline(0, color='grey', lw=0.8)
  ax.set(xlabel='test Spearman (95% interval, bootstrap over test images)')
  ax.grid(alpha=0.3, axis='x')
  ax.legend(fontsize=8)
  return save_figure(fig, path)


def per_roi(rois: dict[str, dict], path: Path) -> Path:
  """Test Spearman per target ROI with its 95% interval, and the ROI's
  ceiling (where the subject has one) as a black tick.

  Args:
    rois: ROI -> {'scores': name -> stat -> {value, low, high}}.
    path: the PNG to write.
  """
  plt = pyplot()
  names = list(rois)
  fig, ax = plt.subplots(
    figsize=(2.2 + 0.7 * len(names), 3.6), layout='constrained'
  )
  x = np.arange(len(names))
  m = [rois[r]['scores']['model']['spearman'] for r in names]
  val = np.array([d['value'] for d in m])
  err = np.abs(
    np.array([[d['value'] - d['low'], d['high'] - d['value']] for d in m]).T
  )
  ax.bar(x, val, yerr=err, capsize=3, color='C0', label='trained model')
  ceil = [rois[r]['scores'].get('ceiling', {}).get('spearman') for r in names]
  if any(c is not None for c in ceil):
    cv = [np.nan if c is None else c['value'] for c in ceil]
    ceiling_lines(ax, x, cv, 0.4)
  ax.set_xticks(x, names, fontsize=8)
  ax.axhline(0, color='k', lw=0.6)
  ax.set_ylabel('test Spearman (95% interval)')
  ax.legend(
    fontsize=7, frameon=False, loc='upper left', bbox_to_anchor=(1.01, 1)
  )
  return save_figure(fig, path)
