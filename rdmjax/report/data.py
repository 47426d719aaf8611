"""report.md's data and tfds sections, as functions of results.json's
'data' and 'tfds' entries."""

from __future__ import annotations

from typing import Any

from rdmjax.report import md_table

FIGURE = 'data_images_responses.png'  # in WORKDIR/figures


def markdown(summary: dict[str, Any]) -> str:
  rows = [
    [roi, c['lh'], c['rh']] for roi, c in summary['vertices_per_roi'].items()
  ]
  return (
    f'## Data: {summary["subject"]}\n\n'
    f'{summary["images"]["train"]} training and '
    f'{summary["images"]["test"]} test images; fMRI for '
    f'{", ".join(summary["fmri_splits"])}; '
    f'{summary["vertices"]["lh"]} + {summary["vertices"]["rh"]} vertices '
    '(lh + rh).\n\n'
    + md_table(['ROI', 'lh vertices', 'rh vertices'], rows)
    + f'\n![images and responses](figures/{FIGURE})\n'
  )


def tfds_markdown(out: dict[str, Any]) -> str:
  name, data_dir = out['config'], out['data_dir']
  rows = [[k, v] for k, v in out['splits'].items()]
  return (
    f'## TFDS dataset\n\n`nsd_algonauts/{name}` (array_record) in '
    f"`{data_dir}`; open it with `tfds.data_source('nsd_algonauts/{name}', "
    f'data_dir=...)`.\n\n' + md_table(['split', 'examples'], rows)
  )
