"""The MDS map of an RDM (`rdmjax.rsa.mds`), coloured by image label."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdmjax.errors import InputError
from rdmjax.report.plots import label_colours, label_key, pyplot, save_figure


def mds_figure(
  coords,
  labels: Sequence | None = None,
  path: Path = Path('mds.png'),
  title: str | None = None,
) -> Path:
  """Scatter of an MDS map (the first two columns of coords), one colour
  per distinct label with a legend (labels sorted and coloured as the RDM
  heatmaps' label strips, `report.plots.label_colours`).

  Args:
    coords: [n, dim] from `mds` (dim 1: drawn on a line).
    labels: n categories (any hashable values), or None for one colour.
    path: the PNG to write (through `report.plots.save_figure`).
    title: the axes' title (default 'classical MDS, n = ...').

  Returns:
    The path written.
  """
  xy = np.asarray(coords, np.float64)
  if xy.ndim != 2 or xy.shape[1] < 1:
    raise InputError(f'coords shape {xy.shape}: pass [n, dim]')
  if xy.shape[1] == 1:
    xy = np.concatenate([xy, np.zeros_like(xy)], 1)
  n = xy.shape[0]
  if labels is not None and len(labels) != n:
    raise InputError(f'{len(labels)} labels for {n} points')
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 5.6), layout='constrained')
  size = max(4.0, min(30.0, 3000.0 / max(n, 1)))
  if labels is None:
    ax.scatter(xy[:, 0], xy[:, 1], s=size, lw=0, alpha=0.8)
  else:
    labels = list(labels)
    colours = label_colours(labels)
    cats = sorted(dict.fromkeys(labels), key=lambda v: label_key(str(v)))
    for cat in cats:
      sel = np.array([lab == cat for lab in labels])
      color = colours[str(cat)]
      ax.scatter(
        xy[sel, 0],
        xy[sel, 1],
        s=size,
        lw=0,
        alpha=0.8,
        color=color,
        label=f'{cat} ({sel.sum()})',
      )
    ax.legend(
      fontsize=7,
      markerscale=max(1.0, 12 / size),
      loc='upper left',
      bbox_to_anchor=(1.01, 1.0),
      ncol=1 + len(cats) // 25,
      frameon=False,
    )
  ax.set_aspect('equal', 'datalim')
  ax.set_xlabel('MDS 1', fontsize=8)
  ax.set_ylabel('MDS 2', fontsize=8)
  ax.tick_params(labelsize=7)
  ax.set_title(title or f'classical MDS, n = {n}', fontsize=10)
  return save_figure(fig, path)
