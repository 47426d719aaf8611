"""report.md's rdm section, as a function of results.json's 'rdm' entry."""

from __future__ import annotations

from rdmjax.report import md_table, plots
from rdmjax.rsa.analysis import KINDS


def by_roi_metric(results: dict) -> dict[tuple[str, str], dict]:
  return {
    (roi, m): res
    for roi, e in results['rois'].items()
    for m, res in e['metrics'].items()
  }


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
    md_table(header, rows),
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
    for (r, m), v in by_roi_metric(results).items()
  ]
  md = [
    '\n### RSA: embedding RDMs vs fMRI RDMs\n\n'
    'Spearman [95% interval, bootstrap over the images] (Pearson), p of a '
    'permutation test of image labels, between the upper triangles of the '
    f'correlation RDM of each embedding and the fMRI RDM{over}. Ceiling: '
    'the same comparison with the RDM of the noiseless synthetic responses '
    '(what a perfect model of the expected responses would reach; not a '
    'strict upper bound).\n\n',
    md_table(head, rows),
  ]
  if results['figures']['rsa']:
    md.append(f'\n![RSA]({results["figures"]["rsa"]})\n')
  return md


def markdown(results: dict) -> str:
  """The report section: Tables 1-2 style extremes, figures, RSA table."""
  flat = by_roi_metric(results)
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
    md_table(
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
      "\nMDS maps of the images (classical MDS of the first metric's RDM as distances: the square root of 1 - r, 1 - cos and squared Euclidean; "
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
  for (r, m), v in by_roi_metric(results).items():
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
    md_table(
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
