"""`--mode=data`: what was read, as `summary.json`, a figure and a section.

Writes WORKDIR/summary.json (subject, image counts per split, vertices per
ROI and hemisphere, whether test fMRI and a noise ceiling exist) and
WORKDIR/figures/data_images_responses.png (a few images beside their
responses in each configured ROI).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import logging

from rdmjax import data, files, paths, report
from rdmjax.data import images
from rdmjax.report import data as data_report
from rdmjax.report import figures, rdm_plots


def summarize(subject, rois) -> dict:
  """Counts per split and vertices per ROI and hemisphere."""
  counts = {}
  for roi in dict.fromkeys(rois):
    counts[roi] = subject.vertex_counts(roi)
  return {
    'subject': subject.name,
    'root': str(subject.paths.train.parent),
    'images': {s: subject.n_images(s) for s in ('train', 'test')},
    'fmri_splits': sorted(subject.fmri),
    'vertices': subject.n_vertices,
    'vertices_per_roi': counts,
    'noise_ceiling': subject.noise_ceiling is not None,
  }


def images_and_responses(subject, rois, path: Path, n_images: int = 4) -> Path:
  """A few training images beside their responses per ROI
  (`rdm_plots.images_and_responses`, drawn through `report.figures`)."""
  n_train = subject.n_images('train')
  idx = np.linspace(0, n_train - 1, min(n_images, n_train)).astype(int)
  imgs = images.load_images(
    [subject.image_paths('train')[i] for i in idx], progress=False
  )
  ids = subject.nsd_ids('train')
  return figures.draw(
    rdm_plots.images_and_responses,
    imgs,
    [f'train #{i} (nsd {ids[i]})' for i in idx],
    {roi: subject.responses(roi, 'train', rows=idx) for roi in rois},
    {roi: subject.vertex_counts(roi)['lh'] for roi in rois},
    f'{subject.name}: images and their fMRI responses',
    path=path,
  )


def run(config, workdir: str | Path) -> dict:
  workdir = paths.path(workdir)
  subject = data.subject_from_config(config, workdir)
  rois = ('all', *config.rdm.rois, config.data.roi)
  summary = summarize(subject, rois)
  files.atomic_write(
    workdir / 'summary.json', json.dumps(summary, indent=2) + '\n'
  )
  images_and_responses(
    subject,
    list(dict.fromkeys(rois)),
    path=workdir / 'figures' / 'data_images_responses.png',
  )
  logging.info('data summary: %s', summary)
  report.update_results(workdir, 'data', summary)
  report.write_section(workdir, 'data', data_report.markdown(summary))
  return summary
