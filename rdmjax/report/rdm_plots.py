"""Figures of the data and rdm stages: images with responses, RDM heatmaps
(one or a grid), histograms, extreme pairs and RSA bars, drawn and saved
as `rdmjax.report.plots` says."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdmjax.report.plots import (
  ceiling_lines,
  cluster_order,
  fmt_value,
  label_colours,
  label_runs,
  metric_label,
  pyplot,
  save_figure,
  within_label_order,
)


def images_and_responses(
  images: Sequence[np.ndarray],
  titles: Sequence[str],
  responses: dict[str, np.ndarray],
  n_lh: dict[str, int],
  title: str,
  path: Path,
) -> Path:
  """A few images, each beside its response profile per ROI.

  Args:
    images: [n] images (H, W, 3).
    titles: [n] a title per image.
    responses: ROI -> [n, v] the images' responses (lh vertices first).
    n_lh: ROI -> its count of lh vertices (a dashed line between them).
    title: the figure's title.
    path: the PNG to write.
  """
  plt = pyplot()
  n, rois = len(images), list(responses)
  fig, axes = plt.subplots(
    n,
    1 + len(rois),
    figsize=(2.4 + 3.2 * len(rois), 2.2 * n),
    squeeze=False,
    layout='constrained',
  )
  for r in range(n):
    axes[r, 0].imshow(images[r])
    axes[r, 0].set_title(titles[r], fontsize=8)
    axes[r, 0].axis('off')
    for c, roi in enumerate(rois, start=1):
      resp = responses[roi][r]
      ax = axes[r, c]
      ax.plot(resp, lw=0.4, color='k')
      ax.axvline(n_lh[roi] - 0.5, color='tab:red', lw=0.8, ls='--')
      ax.set_xlim(0, len(resp))
      if r == 0:
        ax.set_title(f'{roi} ({len(resp)} vertices; lh | rh)', fontsize=9)
      if r == n - 1:
        ax.set_xlabel('vertex (challenge space)', fontsize=8)
      if c == 1:
        ax.set_ylabel('response', fontsize=8)
      ax.tick_params(labelsize=7)
  fig.suptitle(title, fontsize=10)
  return save_figure(fig, path)


def _label_axes(ax, rows: list[str], n: int) -> None:
  """Colour strips of the rows' labels left of and above an RDM drawn over
  [-0.5, n - 0.5]; where the labels form one block each, also the block
  boundaries (thin white lines and minor ticks) and the names at the block
  centres (of blocks of at least 2% of the rows, at least 4% apart)."""
  m = len(rows)
  colours = label_colours(rows)
  rgb = np.array([colours[r][:3] for r in rows])
  w, gap = 0.035 * n, 0.008 * n
  lo, hi = -0.5 - gap - w, -0.5 - gap
  for strip, ext in (
    (rgb[:, None], (lo, hi, n - 0.5, -0.5)),
    (rgb[None], (-0.5, n - 0.5, hi, lo)),
  ):
    ax.imshow(strip, extent=ext, interpolation='nearest')
  ax.set_xlim(lo, n - 0.5)
  ax.set_ylim(n - 0.5, lo)
  for side in ('top', 'right', 'bottom', 'left'):
    ax.spines[side].set_visible(False)
  runs = label_runs(rows)
  if len(runs) != len(set(rows)):  # not in blocks: the strips only
    return
  scale = n / m
  edges = [a * scale - 0.5 for _, a, _ in runs[1:]]
  ax.hlines(edges, -0.5, n - 0.5, colors='w', lw=0.5, alpha=0.9)
  ax.vlines(edges, -0.5, n - 0.5, colors='w', lw=0.5, alpha=0.9)
  named, last = [], -np.inf  # names 4% of the side apart: no overlaps
  for v, a, b in runs:
    if b - a >= 0.02 * m and (a + b) / 2 - last >= 0.04 * m:
      named.append((v, (a + b) / 2))
      last = (a + b) / 2
  ax.set_yticks(
    [c * scale - 0.5 for _, c in named], [v for v, _ in named], fontsize=6
  )
  ax.tick_params(axis='y', length=0, pad=1)
  for axis in (ax.xaxis, ax.yaxis):
    axis.set_ticks(edges, minor=True)
  ax.tick_params(which='minor', length=3, width=0.5)


def _heat_ax(ax, heat, n, vlim, title, order=None, rows=None, how=None):
  """One RDM heatmap; axes in image indices (heat may be block means).

  Args:
    ax: the axes.
    heat: [m, m] the RDM or its block means.
    n: images the RDM spans.
    vlim: colour limits.
    title: the axes' title.
    order: [m] the rows in the order to draw (None: as given: image index
      ticks unless rows are given).
    rows: [m] the label of each row of heat, or None: drawn along the axes
      (`_label_axes`).
    how: the x-axis label of a reordered RDM.
  """
  if order is not None:
    heat = heat[np.ix_(order, order)]
    if rows is not None:
      rows = [rows[k] for k in order]
  im = ax.imshow(
    heat,
    cmap='viridis',
    vmin=vlim[0],
    vmax=vlim[1],
    extent=(-0.5, n - 0.5, n - 0.5, -0.5),
    interpolation='antialiased',
  )
  ax.set_title(title, fontsize=9)
  if order is None and rows is None:
    ax.set_xlabel('image index', fontsize=8)
    ax.set_ylabel('image index', fontsize=8)
  else:
    ax.set_xlabel(how or 'images, average-linkage order', fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
  ax.tick_params(labelsize=7)
  if rows is not None:
    _label_axes(ax, list(rows), n)
  return im


def _coarse(heat: np.ndarray, n: int) -> str:
  return '' if heat.shape[0] == n else f', block means {heat.shape[0]}^2'


BY_LABEL = 'images by label; average-linkage order within a label'


def rdm_heatmap(
  heat: np.ndarray,
  *,
  n: int,
  roi: str,
  metric: str,
  vlim: tuple[float, float],
  path: Path,
  rows: Sequence[str] | None = None,
) -> Path:
  """One RDM in two orders: by label (with rows) or image order, and
  average-linkage order.

  Args:
    heat: [m, m] the RDM (m = n) or its block means (m < n): in image order,
      or with rows, in label order (`label_order`, before block means).
    n: images the RDM spans.
    roi, metric: for the title and colour bar.
    vlim: colour limits (the analysis passes the 1st and 99th percentiles of
      the off-diagonal values, so the zero diagonal does not set the scale).
    path: the PNG.
    rows: [m] the label of each row of heat (`block_labels`), or None. With
      labels the left panel shows the label blocks (average-linkage order
      inside each), and the right one their colours along its axes.
  """
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.8), layout='constrained')
  sub = f'{n} images{_coarse(heat, n)}'
  if rows is None:
    im = _heat_ax(axes[0], heat, n, vlim, f'image order ({sub})')
  else:
    im = _heat_ax(
      axes[0],
      heat,
      n,
      vlim,
      f'by label ({sub})',
      within_label_order(heat, rows),
      rows,
      BY_LABEL,
    )
  _heat_ax(
    axes[1], heat, n, vlim, 'average-linkage order', cluster_order(heat), rows
  )
  cb = fig.colorbar(im, ax=axes, shrink=0.85)
  cb.set_label(f'{metric_label(metric)} (1st-99th percentile)', fontsize=8)
  cb.ax.tick_params(labelsize=7)
  fig.suptitle(f'RDM, ROI {roi}: {metric_label(metric)}', fontsize=10)
  return save_figure(fig, path)


def _roi_metric_grid(cells: dict, cell_size: tuple[float, float]):
  """A figure with ROIs as rows and metrics as columns.

  Returns:
    (fig, [(ax, roi, metric, cells[roi, metric]), ...]); axes without a
    cell are switched off.
  """
  rois = list(dict.fromkeys(r for r, _ in cells))
  metrics = list(dict.fromkeys(m for _, m in cells))
  fig, axes = pyplot().subplots(
    len(rois),
    len(metrics),
    figsize=(cell_size[0] * len(metrics), cell_size[1] * len(rois)),
    squeeze=False,
    layout='constrained',
  )
  items = []
  for (r, roi), (c, metric) in itertools.product(
    enumerate(rois), enumerate(metrics)
  ):
    if (roi, metric) in cells:
      items.append((axes[r, c], roi, metric, cells[roi, metric]))
    else:
      axes[r, c].axis('off')
  return fig, items


def rdm_grid(heats: dict, path: Path) -> Path:
  """Figure 1: every ROI (rows) x metric (columns) RDM, by label where the
  images have one (average-linkage order within a label), else in
  average-linkage order.

  Args:
    heats: (roi, metric) -> (heat [m, m], n images, (vmin, vmax)[, rows]),
      rows as `rdm_heatmap`'s (None or absent: no labels).
    path: the PNG.
  """
  fig, cells = _roi_metric_grid(heats, (4.6, 4.0))
  by_label = False
  for ax, roi, metric, (heat, n, vlim, *rest) in cells:
    rows = rest[0] if rest else None
    by_label |= rows is not None
    title = f'{roi}: {metric_label(metric)}{_coarse(heat, n)}'
    if rows is None:
      im = _heat_ax(ax, heat, n, vlim, title, cluster_order(heat))
    else:
      order = within_label_order(heat, rows)
      im = _heat_ax(ax, heat, n, vlim, title, order, rows, BY_LABEL)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(metric_label(metric), fontsize=7)
    cb.ax.tick_params(labelsize=7)
  how = 'by label' if by_label else 'in average-linkage order'
  fig.suptitle(f'RDMs of the fMRI responses, images {how}', fontsize=11)
  return save_figure(fig, path)


def rdm_histograms(hists: dict, path: Path) -> Path:
  """Figure 2: the distribution of RDM values per ROI (rows) x metric.

  Args:
    hists: (roi, metric) -> ({'counts': [bins], 'edges': [bins + 1]}, mean,
      number of pairs).
    path: the PNG.
  """
  fig, cells = _roi_metric_grid(hists, (4.4, 2.9))
  for ax, roi, metric, (h, mean, n_pairs) in cells:
    counts, edges = np.asarray(h['counts']), np.asarray(h['edges'])
    ax.stairs(counts, edges, fill=True, color='tab:blue', alpha=0.8)
    ax.axvline(mean, color='tab:red', lw=1, ls='--', label=f'mean {mean:.3g}')
    nz = np.flatnonzero(counts)
    if nz.size:  # correlation bins span [0, 2]: zoom to the values
      pad = 2 * (edges[1] - edges[0])
      ax.set_xlim(edges[nz[0]] - pad, edges[nz[-1] + 1] + pad)
    ax.set_title(f'{roi}: {metric_label(metric)}', fontsize=9)
    ax.set_xlabel(metric_label(metric), fontsize=8)
    ax.set_ylabel('image pairs', fontsize=8)
    ax.text(
      0.02,
      0.95,
      f'{n_pairs:,} pairs',
      transform=ax.transAxes,
      fontsize=7,
      va='top',
    )
    ax.legend(fontsize=7, loc='upper right', frameon=False)
    ax.tick_params(labelsize=7)
  fig.suptitle('Distribution of RDM values (pairs i < j)', fontsize=11)
  return save_figure(fig, path)


def image_pairs(
  images: dict,
  rows: Sequence[tuple[str, Sequence[tuple[int, int, float]]]],
  *,
  ids: np.ndarray,
  title: str,
  path: Path,
) -> Path:
  """Tables 1-2: image pairs side by side with their RDM values.

  Args:
    images: image index -> [h, w, 3] uint8.
    rows: (row label, [(i, j, value), ...]): one row per kind of extreme.
    ids: [n_images] NSD ids, for the captions.
    title: the figure title.
    path: the PNG.
  """
  plt = pyplot()
  k = max(len(p) for _, p in rows)
  # Per pair: two image columns and a narrow gap column.
  widths = [1, 1, 0.15] * k
  fig = plt.figure(figsize=(2.1 * 2 * k + 1.2, 2.5 * len(rows)))
  gs = fig.add_gridspec(len(rows), 3 * k, width_ratios=widths, wspace=0.05)
  for r, (label, pairs) in enumerate(rows):
    for p, (i, j, v) in enumerate(pairs):
      for s, img in enumerate((i, j)):
        ax = fig.add_subplot(gs[r, 3 * p + s])
        ax.imshow(images[img])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f'#{img} (nsd {ids[img]})', fontsize=7)
        if p == 0 and s == 0:
          ax.set_ylabel(label, fontsize=9)
        if s == 0:
          ax.text(
            1.02,
            -0.06,
            fmt_value(v),
            transform=ax.transAxes,
            ha='center',
            va='top',
            fontsize=9,
            weight='bold',
          )
  fig.suptitle(title, fontsize=10)
  return save_figure(fig, path)


def rsa_bars(rsa: dict, path: Path) -> Path:
  """RSA of each embedding source per ROI x fMRI metric, with the ceiling.

  Args:
    rsa: (roi, metric) -> ({source: {'spearman': r, ...}}, ceiling dict or
      None).
    path: the PNG.
  """
  plt = pyplot()
  keys = list(rsa)
  sources = list(dict.fromkeys(s for v, _ in rsa.values() for s in v))
  width = 0.8 / max(1, len(sources))
  fig, ax = plt.subplots(
    figsize=(2.4 + 1.5 * len(keys), 3.6), layout='constrained'
  )
  x = np.arange(len(keys))
  for s_i, s in enumerate(sources):
    got = [rsa[k][0].get(s, {}) for k in keys]
    vals = np.array([g.get('spearman', np.nan) for g in got])
    ci = np.array([g.get('interval', (np.nan, np.nan)) for g in got])
    err = None
    if np.isfinite(ci).any():  # 95% intervals, bootstrap over images
      err = np.abs(np.stack([vals - ci[:, 0], ci[:, 1] - vals]))
    ax.bar(
      x - 0.4 + width * (s_i + 0.5), vals, width, yerr=err, capsize=2, label=s
    )
  ceil = np.array([c['spearman'] if c else np.nan for _, c in rsa.values()])
  has = np.isfinite(ceil)
  if has.any():  # a line over each group's bars (a legend entry of one width)
    ceiling_lines(ax, x, ceil, 0.45)
  ax.axhline(0, color='k', lw=0.6)
  ax.set_xticks(x)
  ax.set_xticklabels(
    [f'{r}\n{textwrap.fill(metric_label(m), 16)}' for r, m in keys], fontsize=8
  )
  ax.set_ylabel('Spearman r (RDM upper triangles)', fontsize=8)
  ax.set_title('RSA: embedding RDMs vs fMRI RDMs', fontsize=10)
  ax.legend(
    fontsize=7, frameon=False, loc='upper left', bbox_to_anchor=(1.01, 1)
  )
  return save_figure(fig, path)
