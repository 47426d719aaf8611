"""`--mode=data`: what was read, as `summary.json`, a figure and a section.

Writes WORKDIR/summary.json (subject, image counts per split, vertices per
ROI and hemisphere, whether test fMRI and a noise ceiling exist) and
WORKDIR/figures/data_images_responses.png (a few images beside their
responses in each configured ROI).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import logging

from rdmjax import data, files, paths, report
from rdmjax.report import rdm_plots


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


def run(config, workdir: str | Path) -> dict:
  workdir = paths.path(workdir)
  subject = data.subject_from_config(config, workdir)
  rois = ('all', *config.rdm.rois, config.data.roi)
  summary = summarize(subject, rois)
  files.atomic_write(
    workdir / 'summary.json', json.dumps(summary, indent=2) + '\n'
  )
  fig = rdm_plots.images_and_responses(
    subject,
    rois=list(dict.fromkeys(rois)),
    n_images=4,
    path=workdir / 'figures' / 'data_images_responses.png',
  )
  logging.info('data summary: %s', summary)
  rows = [
    [roi, c['lh'], c['rh']] for roi, c in summary['vertices_per_roi'].items()
  ]
  report.update_results(workdir, 'data', summary)
  report.write_section(
    workdir,
    'data',
    f'## Data: {subject.name}\n\n'
    f'{summary["images"]["train"]} training and '
    f'{summary["images"]["test"]} test images; fMRI for '
    f'{", ".join(summary["fmri_splits"])}; '
    f'{summary["vertices"]["lh"]} + {summary["vertices"]["rh"]} vertices '
    '(lh + rh).\n\n'
    + report.md_table(['ROI', 'lh vertices', 'rh vertices'], rows)
    + f'\n![images and responses](figures/{fig.name})\n',
  )
  return summary
