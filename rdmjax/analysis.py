"""The RDM analysis stage (`--mode=rdm`): Figures 1-2, Tables 1-2, RSA.

For every ROI in `config.rdm.rois` and metric in `config.rdm.metrics`, on the
responses of `config.rdm.split` (standardised per vertex over all images of
that split when `config.rdm.standardize`: a descriptive analysis, as the
reference study did, not a training set):

- the extreme image pairs (lowest, highest and, for correlation, closest to
  1) and a histogram of all n(n-1)/2 values, streamed by
  `kernels.rdm_stats` (never n x n on the host);
- a heatmap of the RDM: the full matrix up to `config.rdm.max_images`
  images, above that the RDM block-averaged on device to ~1000 x 1000 (only
  the small average comes to the host);
- the RSA of every embedding source: Spearman (and Pearson) between the
  correlation RDM of the embeddings and the fMRI RDM on the upper triangles,
  as THINGSvision reports it; for the synthetic subject also the ceiling,
  the same comparison with the RDM of its noiseless responses. Above
  `config.rdm.max_images` images the RSA uses a seeded random subset of that
  many images (the triangles alone would be ~n^2/2 values per RDM).

Writes WORKDIR/figures/{rdms,rdm_hist,rsa}.png, rdm_{roi}_{metric}.png,
pairs_{roi}_{metric}.png, the `rdm` entry of results.json and the `rdm`
section of report.md.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from rdmjax import data, kernels, plots, report
from rdmjax.data import algonauts
from rdmjax.data import embeddings as embeddings_lib
from rdmjax.errors import InputError

DISPLAY_SIZE = 1000  # heatmap side above max_images images
KINDS = (
  ('lowest', 'most similar (lowest)'),
  ('closest', 'closest to 1'),
  ('highest', 'least similar (highest)'),
)


def responses(subject, roi: str, split: str, standardize: bool) -> np.ndarray:
  """[n_images, n_roi_vertices] f32, z-scored per vertex over the split."""
  x = subject.responses(roi, split)
  return algonauts.Standardizer.fit(x)(x) if standardize else x


def rsa_subset(n: int, max_images: int, seed: int) -> np.ndarray | None:
  """Sorted random image indices for the RSA when n > max_images, else None."""
  if n <= max_images:
    return None
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(n, size=max_images, replace=False))


@functools.partial(jax.jit, static_argnames='size')
def _block_mean(r: jax.Array, size: int) -> jax.Array:
  """r: [n, n] -> [m, m] means over square blocks of ceil(n / size) rows."""
  n = r.shape[0]
  b = -(-n // size)
  m = -(-n // b)
  pad = m * b - n
  s = jnp.pad(r, ((0, pad), (0, pad))).reshape(m, b, m, b).sum((1, 3))
  c = jnp.pad(jnp.ones(n, r.dtype), (0, pad)).reshape(m, b).sum(1)
  return s / (c[:, None] * c[None, :])


@jax.jit
def _moments(r: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and std of the off-diagonal entries of r: [n, n] (zero diagonal)."""
  n = r.shape[0]
  m = n * (n - 1)
  mean = r.sum() / m
  var = jnp.sum((r - mean) ** 2) - n * mean**2  # the n diagonal zeros
  return mean, jnp.sqrt(jnp.maximum(var / m, 0.0))


def display_matrix(
  r: jax.Array, max_images: int, size: int = DISPLAY_SIZE
) -> np.ndarray:
  """The heatmap: r itself, or its block means if n > max_images.

  Args:
    r: [n, n] RDM (on device).
    max_images: the largest n shown entry by entry.
    size: above that, average square blocks of ceil(n / size) images.

  Returns:
    [n, n] or [~size, ~size] f32 on the host.
  """
  if r.shape[0] <= max_images:
    return np.asarray(r)
  return np.asarray(_block_mean(r, size))


def embedding_sources(config, workdir: Path) -> dict[str, Path]:
  """Every embedding cache available: synthetic, WORKDIR/embeddings/*.npz."""
  found = {}
  if not config.data.root:
    cfg = config.copy_and_resolve_references()
    cfg.data.embeddings = 'synthetic'
    found['synthetic'] = data.embeddings_path(cfg, workdir)
  caches = sorted((workdir / 'embeddings').glob('*.npz'))
  found |= {p.stem: p for p in caches if not p.name.endswith('.tmp.npz')}
  if config.data.embeddings not in ('synthetic', 'clip'):
    p = data.embeddings_path(config, workdir)
    found.setdefault(p.stem, p)
  unique, seen = {}, set()
  for name, p in found.items():
    if p.is_file() and p.resolve() not in seen:
      seen.add(p.resolve())
      unique[name] = p
  return unique


def _read_embeddings(sources, split, ids) -> tuple[dict, dict]:
  embs, info = {}, {}
  for name, path in sources.items():
    try:
      emb, meta = embeddings_lib.read(path, split=split, expect_ids=ids)
    except InputError as e:  # a stale cache must not stop the analysis
      logging.warning('embedding source %s skipped: %s', name, e)
      info[name] = {'path': path, 'error': str(e)}
      continue
    embs[name] = emb
    info[name] = {
      'path': path,
      'dim': emb.shape[1],
      **{k: meta.get(k) for k in ('model', 'layer', 'preprocessing')},
    }
  return embs, info


def _noiseless(config, workdir: Path, subject, split: str):
  """The synthetic subject's noiseless (lh, rh) responses, or None."""
  if config.data.root:
    return None
  from rdmjax.data import synthetic

  root = data.data_root(config, workdir)
  path = synthetic.extras_dir(root, subject.name) / 'noiseless.npz'
  if not path.is_file():
    logging.warning('no noiseless responses at %s: no RSA ceiling', path)
    return None
  with np.load(path) as f:
    return f[f'lh_{split}'], f[f'rh_{split}']


def _extremes(stats, ids: np.ndarray) -> dict[str, list[dict]]:
  out = {}
  for kind, _ in KINDS:
    e = getattr(stats, kind)
    if e is None:
      continue
    out[kind] = [
      {
        'i': int(i),
        'j': int(j),
        'nsd_i': int(ids[i]),
        'nsd_j': int(ids[j]),
        'value': float(v),
      }
      for v, i, j in zip(e.values, e.i, e.j)
    ]
  return out


def _quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
  """The q-quantile of histogrammed values, to a bin's width."""
  c = np.cumsum(counts) / max(counts.sum(), 1)
  return float(edges[min(np.searchsorted(c, q) + 1, len(edges) - 1)])


def _colour_limits(heat: np.ndarray, hist: dict) -> tuple[float, float]:
  """1st and 99th percentiles of the values shown, so the zero diagonal does
  not set the scale; of the block means when the heatmap averages blocks."""
  n = heat.shape[0]
  if n * (n - 1) // 2 == hist['counts'].sum():  # the RDM itself
    return tuple(
      _quantile(hist['counts'], hist['edges'], q) for q in (0.01, 0.99)
    )
  off = heat[~np.eye(n, dtype=bool)]
  return tuple(float(v) for v in np.percentile(off, [1, 99]))


def _compare(a, b) -> dict[str, float]:
  return {m: kernels.compare_rdms(a, b, m) for m in ('spearman', 'pearson')}


def analyse(
  x: np.ndarray,
  metric: str,
  ids: np.ndarray,
  config,
  emb_rdms: dict[str, jax.Array],
  subset: np.ndarray | None,
  noiseless: np.ndarray | None,
) -> tuple[dict[str, Any], np.ndarray]:
  """One ROI x metric: extremes, histogram, moments, heatmap, RSA.

  Args:
    x: [n_images, v] f32 responses (standardised if configured).
    metric: an RDM metric.
    ids: [n_images] NSD ids.
    config: the run's config (uses `config.rdm`).
    emb_rdms: source -> [m, m] correlation RDM of its embeddings over the
      RSA images (m = n, or len(subset)).
    subset: [m] image indices of the RSA, or None for all.
    noiseless: [n_images, v] f32 noiseless responses, or None.

  Returns:
    (results dict, heatmap [s, s] f32 with s = n or ~DISPLAY_SIZE).
  """
  c = config.rdm
  kw = dict(precision=c.precision)
  stats = kernels.rdm_stats(
    x,
    metric,
    k=c.top_k,
    closest_to=1.0 if metric == 'correlation' else None,
    bins=c.bins,
    **kw,
  )
  full = kernels.rdm(x, metric, **kw)
  mean, std = (float(v) for v in _moments(full))
  heat = display_matrix(full, c.max_images)
  part = full if subset is None else kernels.rdm(x[subset], metric, **kw)
  del full
  rsa = {name: _compare(part, e) for name, e in emb_rdms.items()}
  ceiling = None
  if noiseless is not None:
    nl = noiseless if subset is None else noiseless[subset]
    ceiling = _compare(part, kernels.rdm(nl, metric, **kw))
  n = x.shape[0]
  out = {
    'n_images': n,
    'n_vertices': x.shape[1],
    'n_pairs': n * (n - 1) // 2,
    'min': float(stats.lowest.values[0]),
    'max': float(stats.highest.values[0]),
    'mean': mean,
    'std': std,
    'extremes': _extremes(stats, ids),
    'histogram': {'counts': stats.hist_counts, 'edges': stats.hist_edges},
    'heatmap': 'full' if heat.shape[0] == n else f'block means {heat.shape}',
    'rsa': rsa,
    'ceiling': ceiling,
  }
  return out, heat


def _pair_figure(subject, split, res, roi, metric, path) -> Path:
  ext = res['extremes']
  idx = sorted({p[k] for ps in ext.values() for p in ps for k in 'ij'})
  paths = subject.image_paths(split)
  imgs = algonauts.load_images([paths[i] for i in idx], progress=False)
  rows = [
    (label, [(p['i'], p['j'], p['value']) for p in ext[kind]])
    for kind, label in KINDS
    if kind in ext
  ]
  return plots.image_pairs(
    dict(zip(idx, imgs)),
    rows,
    ids=subject.nsd_ids(split),
    title=f'{subject.name}, ROI {roi}: {plots.metric_label(metric)}',
    path=path,
  )


def run(config, workdir: str | Path) -> dict:
  """Runs the analysis; returns the `rdm` results entry."""
  from tqdm.auto import tqdm

  workdir = Path(workdir)
  figs = workdir / 'figures'
  c = config.rdm
  subject = data.subject_from_config(config, workdir)
  split = c.split
  ids = subject.nsd_ids(split)
  n = subject.n_images(split)
  if n < 3:
    raise InputError(f'rdm.split={split} has {n} images: an RDM needs >= 3')
  # Fail on a bad name before anything is computed or written.
  for roi in c.rois:
    subject.roi_mask(roi)
  bad = [m for m in c.metrics if m not in kernels.METRICS]
  if bad or c.precision not in kernels.PRECISIONS:
    raise InputError(
      f'rdm.metrics={tuple(c.metrics)}, rdm.precision={c.precision!r}: use '
      f'metrics from {kernels.METRICS} and a precision from '
      f'{kernels.PRECISIONS}'
    )
  subset = rsa_subset(n, c.max_images, config.seed)
  embs, emb_info = _read_embeddings(
    embedding_sources(config, workdir), split, ids
  )
  emb_rdms = {
    name: kernels.rdm(e if subset is None else e[subset], precision=c.precision)
    for name, e in embs.items()
  }
  noiseless = _noiseless(config, workdir, subject, split)
  logging.info(
    'RDM analysis of %s %s images (%d), ROIs %s, metrics %s, embeddings %s',
    subject.name, split, n, c.rois, c.metrics, list(embs),
  )  # fmt: skip
  results = {
    'subject': subject.name,
    'split': split,
    'n_images': n,
    'standardize': bool(c.standardize),
    'precision': c.precision,
    'rsa_images': n if subset is None else len(subset),
    'rsa_subset_seed': None if subset is None else config.seed,
    'embeddings': emb_info,
    'rois': {},
  }
  heats, fig_paths = {}, {}
  todo = list(itertools.product(dict.fromkeys(c.rois), c.metrics))
  for roi, metric in tqdm(todo, desc='RDM analysis', unit='RDM'):
    x = responses(subject, roi, split, c.standardize)
    nl = None
    if noiseless is not None:
      lh, rh = subject.roi_mask(roi)
      nl = np.concatenate([noiseless[0][:, lh], noiseless[1][:, rh]], 1)
      nl = algonauts.standardize(nl) if c.standardize else nl
    logging.info('%s / %s: %d images x %d vertices', roi, metric, *x.shape)
    res, heat = analyse(x, metric, ids, config, emb_rdms, subset, nl)
    entry = results['rois'].setdefault(
      roi, {'n_vertices': x.shape[1], 'metrics': {}}
    )
    entry['metrics'][metric] = res
    vlim = _colour_limits(heat, res['histogram'])
    heats[roi, metric] = (heat, n, vlim)
    fig_paths[roi, metric] = (
      plots.rdm_heatmap(
        heat, n=n, roi=roi, metric=metric, vlim=vlim,
        path=figs / f'rdm_{roi}_{metric}.png',
      ),
      _pair_figure(
        subject, split, res, roi, metric, figs / f'pairs_{roi}_{metric}.png'
      ),
    )  # fmt: skip
    logging.info(
      '%s / %s: min %.4g mean %.4g max %.4g; RSA %s; ceiling %s',
      roi, metric, res['min'], res['mean'], res['max'],
      {k: round(v['spearman'], 4) for k, v in res['rsa'].items()},
      res['ceiling'] and round(res['ceiling']['spearman'], 4),
    )  # fmt: skip
  grid = plots.rdm_grid(heats, path=figs / 'rdms.png')
  hist = plots.rdm_histograms(
    {
      k: (v['histogram'], v['mean'], v['n_pairs'])
      for k, v in _flat(results).items()
    },
    path=figs / 'rdm_hist.png',
  )
  rsa_fig = None
  if embs or noiseless is not None:
    rsa_fig = plots.rsa_bars(
      {k: (v['rsa'], v['ceiling']) for k, v in _flat(results).items()},
      path=figs / 'rsa.png',
    )
  figures = {
    'rdms': grid,
    'hist': hist,
    'rsa': rsa_fig,
    **{f'rdm_{r}_{m}': p[0] for (r, m), p in fig_paths.items()},
    **{f'pairs_{r}_{m}': p[1] for (r, m), p in fig_paths.items()},
  }
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
  return str(Path(p).relative_to(workdir)) if p else None


def markdown(results: dict) -> str:
  """The report section: Tables 1-2 style extremes, figures, RSA table."""
  flat = _flat(results)
  figs = results['figures']
  md = [
    f'## RDM analysis: {results["subject"]}, {results["split"]} images\n\n',
    f'{results["n_images"]} images; responses '
    + ('standardised per vertex over these images; ' if results['standardize']
       else 'as read (not standardised); ')
    + f'{results["precision"]} RDMs.\n\n',
    report.md_table(
      ['ROI', 'metric', 'vertices', 'pairs', 'min', 'mean', 'std', 'max'],
      [
        [r, plots.metric_label(m), v['n_vertices'], v['n_pairs'],
         v['min'], v['mean'], v['std'], v['max']]
        for (r, m), v in flat.items()
      ],
    ),
    f'\n![RDMs]({figs["rdms"]})\n',
    '\nEach RDM beside its average-linkage order: '
    + ', '.join(f'[{r} {m}]({figs[f"rdm_{r}_{m}"]})' for r, m in flat)
    + '.\n',
    f'\n![RDM value distributions]({figs["hist"]})\n',
  ]  # fmt: skip
  for roi, entry in results['rois'].items():
    metrics = list(entry['metrics'])
    md.append(
      f'\n### Extreme pairs, ROI {roi} ({entry["n_vertices"]} vertices)\n\n'
      'Value, then the two images as `index (NSD id)`.\n\n'
    )
    rows = []
    for kind, label in KINDS:
      cells = []
      for m in metrics:
        pairs = entry['metrics'][m]['extremes'].get(kind, [])
        cells.append(
          '<br>'.join(
            f'{plots.fmt_value(p["value"])}: {p["i"]} ({p["nsd_i"]}) & '
            f'{p["j"]} ({p["nsd_j"]})'
            for p in pairs
          )
          or '-'
        )
      rows.append([label, *cells])
    md.append(
      report.md_table(['', *(plots.metric_label(m) for m in metrics)], rows)
    )
    for m in metrics:
      md.append(f'\n![pairs {roi} {m}]({figs[f"pairs_{roi}_{m}"]})\n')
  sources = list(results['embeddings'])
  ok = [s for s in sources if 'error' not in results['embeddings'][s]]
  has_ceiling = any(v['ceiling'] for v in flat.values())
  if ok or has_ceiling:
    n_rsa = results['rsa_images']
    md.append(
      '\n### RSA: embedding RDMs vs fMRI RDMs\n\n'
      'Spearman (Pearson) between the upper triangles of the correlation RDM '
      'of each embedding and the fMRI RDM'
      + (f', over a random subset of {n_rsa} images (seed '
         f'{results["rsa_subset_seed"]})' if n_rsa < results['n_images']
         else f', over all {n_rsa} images')
      + '. Ceiling: the same comparison with the RDM of the noiseless '
      'synthetic responses (the best any model can reach).\n\n'
    )  # fmt: skip
    head = ['ROI', 'fMRI metric', *ok] + (['ceiling'] if has_ceiling else [])

    def cell(d):
      return f'{d["spearman"]:.3f} ({d["pearson"]:.3f})' if d else '-'

    rows = [
      [r, plots.metric_label(m), *(cell(v['rsa'][s]) for s in ok)]
      + ([cell(v['ceiling'])] if has_ceiling else [])
      for (r, m), v in flat.items()
    ]
    md.append(report.md_table(head, rows))
    if figs['rsa']:
      md.append(f'\n![RSA]({figs["rsa"]})\n')
  for s in sources:
    if 'error' in results['embeddings'][s]:
      md.append(f'\nEmbedding source {s} skipped: '
                f'{results["embeddings"][s]["error"]}\n')  # fmt: skip
  return ''.join(md)
