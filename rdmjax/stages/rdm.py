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

import numpy as np
from absl import logging

from rdmjax import data, paths, report
from rdmjax.data import images, inputs
from rdmjax.errors import InputError
from rdmjax.report import mds as mds_plot
from rdmjax.report import plots
from rdmjax.rsa import analysis, interop, mds, repeats
from rdmjax.rsa import rdm as kernels
from rdmjax.rsa.analysis import KINDS


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
  return plots.image_pairs(
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
  bad = [m for m in c.metrics if m not in kernels.METRICS]
  if bad or c.precision not in kernels.PRECISIONS:
    raise InputError(
      f'rdm.metrics={tuple(c.metrics)}, rdm.precision={c.precision!r}: use '
      f'metrics from {kernels.METRICS} and a precision from '
      f'{kernels.PRECISIONS}'
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
  from tqdm.auto import tqdm

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
  bar = tqdm(total=len(rois) * len(c.metrics), desc='RDM analysis', unit='RDM')
  for roi, metric, x, nl in _per_roi(config, workdir, subject, rois, keep):
    logging.info('%s / %s: %d images x %d vertices', roi, metric, *x.shape)
    saver = None
    if c.get('save_rdms', True):
      f = paths.path(workdir) / 'rdms' / f'{roi}_{metric}.npz'
      saver = _saver(f, roi, metric, ids, subject.name, split)
      results.setdefault('rdm_files', {})[f'{roi} {metric}'] = _rel(f, workdir)
    res, heat = analysis.analyse(
      x, metric, ids, config, emb_rdms, subset, nl, reps, saver, order=order
    )
    entry = results['rois'].setdefault(
      roi, {'n_vertices': x.shape[1], 'metrics': {}}
    )
    entry['metrics'][metric] = res
    vlim = analysis.colour_limits(heat, res['histogram'])
    heats[roi, metric] = (heat, n, vlim, rows)
    fig_paths[f'rdm_{roi}_{metric}'] = plots.rdm_heatmap(
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
  """Classical MDS of the RDM of (a seeded subset of) the images."""
  n = x.shape[0]
  rows = analysis.rsa_subset(n, MDS_IMAGES, config.seed)
  sub = x if rows is None else x[np.sort(rows)]
  keep = range(n) if rows is None else np.sort(rows)
  impl = analysis.stage_impl(config.rdm)
  coords = mds.mds(np.asarray(kernels.rdm(sub, metric, impl=impl)))
  return mds_plot.mds_figure(
    coords,
    None if labels is None else [labels[k] for k in keep],
    path,
    title=f'{roi}, {plots.metric_label(metric)}: classical MDS of '
    f'{len(coords)} images',
  )


def _per_roi(config, workdir, subject, rois, keep):
  """(roi, metric, responses, noiseless) with each ROI's responses read,
  standardised and put on the device once for all its metrics."""
  import jax

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
  flat = _flat(results)
  hists = {
    k: (v['histogram'], v['mean'], v['n_pairs']) for k, v in flat.items()
  }
  rsa = {k: (v['rsa'], v['ceiling']) for k, v in flat.items()}
  return {
    'rdms': plots.rdm_grid(heats, path=figs / 'rdms.png'),
    'hist': plots.rdm_histograms(hists, path=figs / 'rdm_hist.png'),
    'rsa': plots.rsa_bars(rsa, path=figs / 'rsa.png') if with_rsa else None,
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
    name: kernels.rdm(e if subset is None else e[subset], precision=c.precision)
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
  has_ceiling = any(v['ceiling'] for v in _flat(results).values())
  figures = _summary_figures(
    results, heats, workdir / 'figures', bool(embs) or has_ceiling
  )
  figures.update(fig_paths)
  # Relative to the workdir, as report.md links them.
  results['figures'] = {k: _rel(p, workdir) for k, p in figures.items()}
  report.update_results(workdir, 'rdm', results)
  report.write_section(workdir, 'rdm', markdown(results))
  return results


def _flat(results: dict) -> dict[tuple[str, str], dict]:
  return {
    (roi, m): res
    for roi, e in results['rois'].items()
    for m, res in e['metrics'].items()
  }


def _rel(p, workdir: Path) -> str | None:
  return str(paths.path(p).relative_to(workdir)) if p else None


def _extremes_md(roi: str, entry: dict, figs: dict) -> list[str]:
  metrics = list(entry['metrics'])
  rows = []
  for kind, label in KINDS:
    cells = []
    for m in metrics:
      pairs = entry['metrics'][m]['extremes'].get(kind, [])
      text = '<br>'.join(
        f'{plots.fmt_value(p["value"])}: {p["i"]} ({p["nsd_i"]}) & '
        f'{p["j"]} ({p["nsd_j"]})'
        for p in pairs
      )
      cells.append(text or '-')
    rows.append([label, *cells])
  header = ['', *(plots.metric_label(m) for m in metrics)]
  return [
    f'\n### Extreme pairs, ROI {roi} ({entry["n_vertices"]} vertices)\n\n'
    'Value, then the two images as `index (NSD id)`.\n\n',
    report.md_table(header, rows),
    *(f'\n![pairs {roi} {m}]({figs[f"pairs_{roi}_{m}"]})\n' for m in metrics),
  ]


def _rsa_md(results: dict, ok: list[str], has_ceiling: bool) -> list[str]:
  n_rsa = results['rsa_images']
  if n_rsa < results['n_images']:
    over = (
      f', over a random subset of {n_rsa} images (seed '
      f'{results["rsa_subset_seed"]})'
    )
  else:
    over = f', over all {n_rsa} images'
  head = ['ROI', 'fMRI metric', *ok] + (['ceiling'] if has_ceiling else [])

  def cell(d):
    if not d:
      return '-'
    out = f'{d["spearman"]:.3f}'
    if 'interval' in d:
      out += ' [{:.3f}, {:.3f}]'.format(*d['interval'])
    out += f' ({d["pearson"]:.3f})'
    if 'p' in d:
      out += f', p={d["p"]:.2g}'
    return out

  rows = [
    [r, plots.metric_label(m), *(cell(v['rsa'][s]) for s in ok)]
    + ([cell(v['ceiling'])] if has_ceiling else [])
    for (r, m), v in _flat(results).items()
  ]
  md = [
    '\n### RSA: embedding RDMs vs fMRI RDMs\n\n'
    'Spearman [95% interval, bootstrap over the images] (Pearson), p of a '
    'permutation test of image labels, between the upper triangles of the '
    f'correlation RDM of each embedding and the fMRI RDM{over}. Ceiling: '
    'the same comparison with the RDM of the noiseless synthetic responses '
    '(what a perfect model of the expected responses would reach; not a '
    'strict upper bound).\n\n',
    report.md_table(head, rows),
  ]
  if results['figures']['rsa']:
    md.append(f'\n![RSA]({results["figures"]["rsa"]})\n')
  return md


def markdown(results: dict) -> str:
  """The report section: Tables 1-2 style extremes, figures, RSA table."""
  flat = _flat(results)
  figs = results['figures']
  how = (
    'standardised per vertex over these images; '
    if results['standardize']
    else 'as read (not standardised); '
  )
  rows = [
    [r, plots.metric_label(m), v['n_vertices'], v['n_pairs']]
    + [v['min'], v['mean'], v['std'], v['max']]
    for (r, m), v in flat.items()
  ]
  links = ', '.join(f'[{r} {m}]({figs[f"rdm_{r}_{m}"]})' for r, m in flat)
  md = [
    f'## RDM analysis: {results["subject"]}, {results["split"]} images\n\n',
    f'{results["n_images"]} images; responses {how}'
    f'{results["precision"]} RDMs.\n\n',
    report.md_table(
      ['ROI', 'metric', 'vertices', 'pairs', 'min', 'mean', 'std', 'max'], rows
    ),
    f'\n![RDMs]({figs["rdms"]})\n',
    '\nEach RDM by label (where the images have one; else in image order) '
    f'beside its average-linkage order: {links}.\n',
    f'\n![RDM value distributions]({figs["hist"]})\n',
  ]
  maps = [k for k in figs if k.startswith('mds_') and figs[k]]
  if maps:
    md.append(
      "\nMDS maps of the images (classical MDS of the first metric's RDM; "
      "colour: the image's label, the synthetic category or rdm.labels): "
      + ', '.join(f'[{k[4:]}]({figs[k]})' for k in maps)
      + f'.\n\n![MDS]({figs[maps[0]]})\n'
    )
  for roi, entry in results['rois'].items():
    md += _extremes_md(roi, entry, figs)
  emb = results['embeddings']
  ok = [s for s in emb if 'error' not in emb[s]]
  has_ceiling = any(v['ceiling'] for v in flat.values())
  if ok or has_ceiling:
    md += _rsa_md(results, ok, has_ceiling)
  for s in emb:
    if 'error' in emb[s]:
      md.append(f'\nEmbedding source {s} skipped: {emb[s]["error"]}\n')
  if results.get('repeat_counts'):
    md += _repeats_md(results)
  return ''.join(md)


def _repeats_md(results: dict) -> list[str]:
  """How much each RDM follows the images' repeat counts."""
  counts = ', '.join(
    f'{n} images of {r}' for r, n in results['repeat_counts'].items()
  )
  rows = []
  for (r, m), v in _flat(results).items():
    b = v.get('repeats')
    if not b:
      continue
    by = b['by_count']
    rows.append(
      [
        r,
        plots.metric_label(m),
        b['spearman'],
        b.get('spearman_corrected', '-'),
        f'{by[min(by)]:.4g} / {by[max(by)]:.4g} ({min(by)} / {max(by)})',
      ]
    )
  return [
    '\n### Repeat-count bias\n\n'
    f'Training responses are means over 1 to 3 repeats ({counts}); fewer '
    "repeats, more noise, larger distances. Spearman of each image's mean "
    'dissimilarity with its repeat count (0: no bias); for Euclidean RDMs '
    'also after removing the fitted noise term S (1/r_i + 1/r_j) from '
    'squared distances; and the mean dissimilarity of pairs of the fewest '
    'and of the most repeats. `--config.rdm.images=equal_repeats` keeps only '
    f'the images of the most common count (now: {results["images"]}).\n\n',
    report.md_table(
      [
        'ROI',
        'metric',
        'Spearman with repeats',
        'corrected',
        'mean of fewest / most',
      ],
      rows,
    ),
  ]
