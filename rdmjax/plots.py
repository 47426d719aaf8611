"""Figures a scientist expects: images with responses, RDMs, histograms.

matplotlib with the Agg backend (no screen needed); every function writes a
PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


def _save(fig, path: Path) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches='tight')
  _plt().close(fig)
  return path


def images_and_responses(
  subject, rois: Sequence[str], n_images: int = 4, path: Path = Path('x.png')
) -> Path:
  """A few training images, each beside its response profile per ROI."""
  from rdmjax.data import algonauts

  plt = _plt()
  n = min(n_images, subject.n_images('train'))
  idx = np.linspace(0, subject.n_images('train') - 1, n).astype(int)
  imgs = algonauts.load_images(
    [subject.image_paths('train')[i] for i in idx], progress=False
  )
  fig, axes = plt.subplots(
    n, 1 + len(rois), figsize=(2.4 + 3.2 * len(rois), 2.2 * n), squeeze=False
  )
  for r, i in enumerate(idx):
    axes[r, 0].imshow(imgs[r])
    axes[r, 0].set_title(
      f'train #{i} (nsd {subject.nsd_ids("train")[i]})', fontsize=8
    )
    axes[r, 0].axis('off')
    for c, roi in enumerate(rois, start=1):
      resp = subject.responses(roi, 'train')[i]
      n_lh = subject.vertex_counts(roi)['lh']
      ax = axes[r, c]
      ax.plot(resp, lw=0.4, color='k')
      ax.axvline(n_lh - 0.5, color='tab:red', lw=0.8, ls='--')
      ax.set_xlim(0, len(resp))
      if r == 0:
        ax.set_title(f'{roi} ({len(resp)} vertices; lh | rh)', fontsize=9)
      if r == n - 1:
        ax.set_xlabel('vertex (challenge space)', fontsize=8)
      ax.set_ylabel('response (z)', fontsize=8)
      ax.tick_params(labelsize=7)
  fig.suptitle(f'{subject.name}: images and their fMRI responses', fontsize=10)
  return _save(fig, path)
