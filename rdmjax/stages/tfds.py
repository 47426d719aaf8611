"""`--mode=tfds`: builds the subject's TFDS dataset (array_record, no TF).

The real subject `config.data.subject` is read from `config.data.root`; with
no root the synthetic subject of `config.data.synthetic` is built (TFDS
config `synthetic`). The dataset lands in WORKDIR/tensorflow_datasets and
opens with `rdmjax.data.tfds_nsd.load` or plain
`tfds.data_source('nsd_algonauts/CONFIG', data_dir=...)`.
"""

from __future__ import annotations

from pathlib import Path

from absl import logging

from rdmjax import paths, report
from rdmjax.data import tfds_nsd
from rdmjax.report import data as data_report


def run(config, workdir: str | Path) -> dict:
  """Builds (once) and returns {'config', 'data_dir', 'splits': {name: n}}."""
  workdir = paths.path(workdir)
  data_dir = workdir / 'tensorflow_datasets'
  if config.data.root:
    name = config.data.subject
    b = tfds_nsd.build(name, data_dir, manual_dir=config.data.root)
  else:
    name = tfds_nsd.SYNTHETIC
    b = tfds_nsd.build(
      name, data_dir, synthetic_kwargs=dict(config.data.synthetic)
    )
  splits = {k: int(v.num_examples) for k, v in b.info.splits.items()}
  out = {'config': name, 'data_dir': str(data_dir), 'splits': splits}
  logging.info('TFDS dataset nsd_algonauts/%s: %s', name, splits)
  report.update_results(workdir, 'tfds', out)
  report.write_section(workdir, 'tfds', data_report.tfds_markdown(out))
  return out
