"""`--mode=rdm`: the RDM analysis (Figures 1-2, Tables 1-2, RSA).

For every ROI in `config.rdm.rois` and metric in `config.rdm.metrics`, on the
images of `config.rdm.split`, `rdmjax.rsa.analysis.analyse` computes the
numbers; this stage writes WORKDIR/figures/{rdms,rdm_hist,rsa}.png,
rdm_{roi}_{metric}.png, pairs_{roi}_{metric}.png, mds_{roi}_{metric}.png
(the first metric; `rdm.mds`), results.json's `rdm` and report.md's `rdm`
section.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from absl import logging
from tqdm.auto import tqdm

from rdmjax import data, paths, report
from rdmjax.data import images, inputs
from rdmjax.errors import InputError
from rdmjax.report import figures, plots, rdm_plots
from rdmjax.report import mds as mds_plot
from rdmjax.report import rdm as rdm_report
from rdmjax.rsa import analysis, interop, mds, repeats
from rdmjax.rsa import rdm as rdm_lib
from rdmjax.rsa.analysis import KINDS


def analysis_options(config) -> analysis.Options:
  """`rdmjax.rsa.analysis.Options` from config.rdm and config.seed."""
  c = config.rdm
  return analysis.Options(
    precision=str(c.precision),
    top_k=int(c.top_k),
    bins=int(c.bins),
    max_images=int(c.max_images),
    bootstrap=int(c.get('bootstrap', 0)),
    permutations=int(c.get('permutations', 0)),
    seed=int(config.seed),
  )


def _pair_figure(subject, split, res, roi, metric, path, keep) -> Path:
  ext = res['extremes']
  idx = sorted({p[k] for ps in ext.values() for p in ps for k in 'ij'})
  files = subject.image_paths(split)
  if keep is not None:
    files = [files[k] for k in keep]
  imgs = images.load_images([files[i] for i in idx], progress=False)
  rows = [
    (label, [(p['i'], p['j'], p['value']) for p in ext[kind]])
    for kind, label in KINDS
    if kind in ext
  ]
  return figures.draw(
    rdm_plots.image_pairs,
    dict(zip(idx, imgs)),
    rows,
    ids=_ids(subject, split, keep),
    title=f'{subject.name}, ROI {roi}: {plots.metric_label(metric)}',
    path=path,
  )


def _check(config, subject) -> int:
  """Fails on bad names before anything is computed or written."""
  c = config.rdm
  n = subject.n_images(c.split)
  if n < 3:
    raise InputError(f'rdm.split={c.split} has {n} images: an RDM needs >= 3')
  for roi in c.rois:
    subject.roi_mask(roi)
  bad = [m for m in c.metrics if m not in rdm_lib.METRICS]
  if bad or c.precision not in rdm_lib.PRECISIONS:
    raise InputError(
      f'rdm.metrics={tuple(c.metrics)}, rdm.precision={c.precision!r}: use '
      f'metrics from {rdm_lib.METRICS} and a precision from '
      f'{rdm_lib.PRECISIONS}'
    )
  return n


def _ids(subject, split, keep):
  ids = subject.nsd_ids(split)
  return ids if keep is None else ids[keep]


def _analyse_all(
  config, workdir, subject, results, emb_rdms, subset, keep, reps
):
  """Every ROI x metric: results['rois'] filled; heatmaps and figures.

  keep: the analysed images of the split (None: all); reps: their repeat
  counts, or None."""
  c, split, figs = config.rdm, config.rdm.split, paths.path(workdir) / 'figures'
  ids, n = _ids(subject, split, keep), results['n_images']
  heats, fig_paths = {}, {}
  rois = list(dict.fromkeys(c.rois))
  labels = inputs.image_labels(config, workdir, subject, split, keep)
  # Heatmaps by label where the images have one (ordered before any block
  # means), each row's label beside them.
  order = rows = None
  if labels is not None:
    order = plots.label_order(labels)
    rows = plots.block_labels(
      [labels[k] for k in order], analysis.display_block(n, c.max_images)
    )
  opts = analysis_options(config)
  bar = tqdm(total=len(rois) * len(c.metrics), desc='RDM analysis', unit='RDM')
  for roi, metric, x, nl in _per_roi(config, workdir, subject, rois, keep):
    logging.info('%s / %s: %d images x %d vertices', roi, metric, *x.shape)
    saver = None
    if c.get('save_rdms', True):
      f = paths.path(workdir) / 'rdms' / f'{roi}_{metric}.npz'
      saver = _saver(f, roi, metric, ids, subject.name, split)
      results.setdefault('rdm_files', {})[f'{roi} {metric}'] = paths.relative(
        f, workdir
      )
    res, heat = analysis.analyse(
      x, metric, ids, opts, emb_rdms, subset, nl, reps, saver, order=order
    )
    entry = results['rois'].setdefault(
      roi, {'n_vertices': x.shape[1], 'metrics': {}}
    )
    entry['metrics'][metric] = res
    vlim = analysis.colour_limits(heat, res['histogram'])
    heats[roi, metric] = (heat, n, vlim, rows)
    fig_paths[f'rdm_{roi}_{metric}'] = figures.draw(
      rdm_plots.rdm_heatmap,
      heat,
      n=n,
      roi=roi,
      metric=metric,
      vlim=vlim,
      path=figs / f'rdm_{roi}_{metric}.png',
      rows=rows,
    )
    fig_paths[f'pairs_{roi}_{metric}'] = _pair_figure(
      subject,
      split,
      res,
      roi,
      metric,
      figs / f'pairs_{roi}_{metric}.png',
      keep,
    )
    if c.get('mds', True) and metric == c.metrics[0]:
      fig_paths[f'mds_{roi}_{metric}'] = _mds_figure(
        x, metric, labels, config, figs / f'mds_{roi}_{metric}.png', roi
      )
    rsa = {k: round(v['spearman'], 4) for k, v in res['rsa'].items()}
    ceiling = res['ceiling'] and round(res['ceiling']['spearman'], 4)
    logging.info(
      '%s / %s: min %.4g mean %.4g max %.4g; RSA %s; ceiling %s',
      *(roi, metric, res['min'], res['mean'], res['max'], rsa, ceiling),
    )
    bar.update()
  bar.close()
  return heats, fig_paths


def _saver(path, roi, metric, ids, subject, split):
  """Saves one RDM (condensed) with its images' NSD ids: rdmjax.rsa.interop's
  .npz, which `interop.load_rdms` and `to_rsatoolbox` read back."""

  def save(v):
    interop.save_rdms(
      path,
      {f'{roi} {metric}': v},
      nsd_ids=ids,
      metric=metric,
      descriptors={'subject': subject, 'split': split, 'roi': roi},
    )

  return save


MDS_IMAGES = 2000  # at most this many images in an MDS map (seeded subset)


def _mds_figure(x, metric, labels, config, path, roi) -> Path:
  """Classical MDS of the RDM of (a seeded subset of) the images: of its
  square root for 1 - r, 1 - cos and squared Euclidean RDMs (squared
  distances; `mds.as_distances`), as the title says."""
  n = x.shape[0]
  rows = analysis.rsa_subset(n, MDS_IMAGES, config.seed)
  sub = x if rows is None else x[np.sort(rows)]
  keep = range(n) if rows is None else np.sort(rows)
  impl = analysis.stage_impl(config.rdm.precision)
  r = np.asarray(rdm_lib.rdm(sub, metric, impl=impl))
  dist, what = mds.as_distances(r, metric)
  coords = mds.mds(dist)
  return figures.draw(
    mds_plot.mds_figure,
    coords,
    None if labels is None else [labels[k] for k in keep],
    path,
    title=f'{roi}: classical MDS of {what}, {len(coords)} images',
  )


def _per_roi(config, workdir, subject, rois, keep):
  """(roi, metric, responses, noiseless) with each ROI's responses read,
  standardised and put on the device once for all its metrics."""
  c = config.rdm
  for roi in rois:
    x = inputs.responses(subject, roi, c.split, c.standardize, keep)
    nl = inputs.noiseless(
      config, workdir, subject, roi, c.split, c.standardize, keep
    )
    x, nl = jax.device_put((x, nl))
    for metric in c.metrics:
      yield roi, metric, x, nl


def _summary_figures(results, heats, figs: Path, with_rsa: bool) -> dict:
  flat = rdm_report.by_roi_metric(results)
  hists = {
    k: (v['histogram'], v['mean'], v['n_pairs']) for k, v in flat.items()
  }
  rsa = {k: (v['rsa'], v['ceiling']) for k, v in flat.items()}
  return {
    'rdms': figures.draw(rdm_plots.rdm_grid, heats, path=figs / 'rdms.png'),
    'hist': figures.draw(
      rdm_plots.rdm_histograms, hists, path=figs / 'rdm_hist.png'
    ),
    'rsa': figures.draw(rdm_plots.rsa_bars, rsa, path=figs / 'rsa.png')
    if with_rsa
    else None,
  }


def run(config, workdir: str | Path) -> dict:
  """Runs the analysis; returns the `rdm` results entry."""
  workdir = paths.path(workdir)
  c = config.rdm
  subject = data.subject_from_config(config, workdir)
  split = c.split
  n = _check(config, subject)
  reps = (
    inputs.repeat_counts(config, subject, workdir) if split == 'train' else None
  )
  keep = None
  if c.get('images', 'all') == 'equal_repeats':
    if reps is None:
      raise InputError(
        'rdm.images=equal_repeats needs repeat counts: set '
        '--config.data.repeats to n_repeats.npy or nsd_expdesign.mat'
      )
    keep = repeats.equal_repeats(reps)
    reps, n = reps[keep], len(keep)
  elif c.get('images', 'all') != 'all':
    raise InputError(f'rdm.images={c.images!r}: use all or equal_repeats')
  subset = analysis.rsa_subset(n, c.max_images, config.seed)
  sources = inputs.embedding_sources(config, workdir)
  embs, emb_info = inputs.read_embeddings(
    sources, split, subject.nsd_ids(split)
  )
  if keep is not None:
    embs = {k: e[keep] for k, e in embs.items()}
  emb_rdms = {
    name: rdm_lib.rdm(e if subset is None else e[subset], precision=c.precision)
    for name, e in embs.items()
  }
  logging.info(
    'RDM analysis of %s %s images (%d), ROIs %s, metrics %s, embeddings %s',
    *(subject.name, split, n, c.rois, c.metrics, list(embs)),
  )
  results = {
    'subject': subject.name,
    'split': split,
    'n_images': n,
    'images': c.get('images', 'all'),
    'repeat_counts': None
    if reps is None
    else {int(k): int(v) for k, v in zip(*np.unique(reps, return_counts=True))},
    'standardize': bool(c.standardize),
    'precision': c.precision,
    'rsa_images': n if subset is None else len(subset),
    'rsa_subset_seed': None if subset is None else config.seed,
    'embeddings': emb_info,
    'rois': {},
  }
  heats, fig_paths = _analyse_all(
    config, workdir, subject, results, emb_rdms, subset, keep, reps
  )
  has_ceiling = any(
    v['ceiling'] for v in rdm_report.by_roi_metric(results).values()
  )
  figures = _summary_figures(
    results, heats, workdir / 'figures', bool(embs) or has_ceiling
  )
  figures.update(fig_paths)
  # Relative to the workdir, as report.md links them.
  results['figures'] = {
    k: paths.relative(p, workdir) for k, p in figures.items()
  }
  report.update_results(workdir, 'rdm', results)
  report.write_section(workdir, 'rdm', rdm_report.markdown(results))
  return results
