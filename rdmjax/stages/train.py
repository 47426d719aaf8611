"""`--mode=train`: trains, scores the test pairs, writes results and report.

Every score is given with a 95% interval from a bootstrap over the test
images (`rdmjax.rsa.inference`), beside what it means, all on exactly the model's
test pairs: the ceiling (for the synthetic subject: how well the noiseless
responses' targets rank-correlate with the noisy ones), the zero-shot RSA
of the embeddings, a ridge encoding model's predicted RDM and the
feature-reweighted RSA (`rdmjax.training.baselines.test_pairs`). With
`train.run_leaked`, the leaked variant (the reference study's mistake) is
trained on the same budget into WORKDIR/leaked and scored on as many test
pairs, each run as a fraction of its own ceiling, with the difference and
its interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rdmjax import paths, report
from rdmjax.report import train_plots
from rdmjax.rsa import group
from rdmjax.rsa import inference as stats
from rdmjax.training import baselines
from rdmjax.training import loop as train

# Names in tables and figures.
LABELS = {
  'model': 'trained model',
  'ridge': 'ridge encoding',
  'reweighted': 'reweighted RSA',
  'zero_shot': 'zero-shot RSA',
  'ceiling': 'ceiling (noiseless)',
}


def test_scores(config, result: train.TrainResult) -> dict[str, Any]:
  """The model and its baselines on the run's test pairs, bootstrapped.

  Returns:
    {'scores': name -> stat -> {value, low, high, sd}, 'n_images',
    'n_pairs', '_samples': name -> stat -> [n_boot] draws (not saved)}.
  """
  tp = result.test_pairs
  metric = config.pairs.metric
  fits: dict[str, Any] = {}
  base = baselines.test_pairs(
    result.data, tp.images, tp.i, tp.j, metric, int(config.seed), fits
  )
  keep = set(config.train.baselines) | {'ceiling'}
  preds = {'model': tp.pred, **{k: v for k, v in base.items() if k in keep}}
  a, b = np.searchsorted(tp.images, tp.i), np.searchsorted(tp.images, tp.j)
  got = stats.bootstrap_pair_scores(
    a,
    b,
    preds,
    tp.target,
    len(tp.images),
    n_boot=int(config.train.bootstrap),
    seed=int(config.seed),
    ceiling='ceiling' if 'ceiling' in preds else None,
  )
  scores = {
    name: {
      s: {k: v for k, v in d.items() if k != 'samples'} for s, d in st.items()
    }
    for name, st in got.items()
  }
  samples = {
    name: {s: d['samples'] for s, d in st.items()} for name, st in got.items()
  }
  out = dict(
    scores=scores,
    n_images=len(tp.images),
    n_pairs=len(tp.i),
    _samples=samples,
  )
  if 'ridge' in fits and not config.pairs.leaked:
    out['encoding'] = baselines.encoding_accuracy(
      result.data, fits['ridge'], result.data.split['test']
    )
  return out


def _point(scores: dict, name: str, stat: str = 'spearman') -> float | None:
  return scores.get(name, {}).get(stat, {}).get('value')


def leaked_minus_disjoint(disjoint: dict, leaked: dict) -> dict[str, Any]:
  """Leaked minus image-disjoint model score, as fractions of their own
  ceilings where both have one (else Spearman), with the interval of the
  difference (independent bootstraps of different test images)."""
  stat = 'fraction_of_ceiling'
  if (
    stat not in disjoint['_samples']['model']
    or stat not in (leaked['_samples']['model'])
  ):
    stat = 'spearman'
  a, b = leaked['_samples']['model'][stat], disjoint['_samples']['model'][stat]
  value = _point(leaked['scores'], 'model', stat) - _point(
    disjoint['scores'], 'model', stat
  )
  d = stats.difference_interval(a, b, value=value)
  return dict(stat=stat, **{k: v for k, v in d.items() if k != 'samples'})


def across_folds(scored: list[dict], seeds: list[int]) -> dict[str, Any]:
  """Mean over repeated image splits with a 95% t interval (the folds'
  spread: what another split of the images would give), per prediction
  and statistic (`rdmjax.rsa.group.mean_sem`, the splits as its units)."""

  out: dict[str, Any] = {'seeds': seeds, 'n': len(scored)}
  for name in scored[0]['scores']:
    out[name] = {}
    for stat in scored[0]['scores'][name]:
      m = group.mean_sem(
        {k: s['scores'][name][stat]['value'] for k, s in enumerate(scored)}
      )
      if m['n'] < 2:
        continue
      out[name][stat] = dict(
        value=m['mean'],
        low=m['ci_low'],
        high=m['ci_high'],
        sem=m['sem'],
        folds=list(m['values'].values()),
      )
  return out


def _folds(config, workdir, scored) -> dict[str, Any] | None:
  """pairs.folds > 1: the run again on other image splits (seed + k),
  each into WORKDIR/folds/seed<s>, scored the same way."""
  k = int(config.pairs.get('folds', 1))
  if k < 2 or config.pairs.leaked:
    return None
  seeds, all_scored = [int(config.seed)], [scored]
  for s in range(int(config.seed) + 1, int(config.seed) + k):
    c = config.copy_and_resolve_references()
    with c.unlocked():
      c.seed, c.train.run_leaked, c.pairs.folds = s, False, 1
    r = train.train(c, workdir / 'folds' / f'seed{s}', data_dir=workdir)
    all_scored.append(test_scores(c, r))
    r.data.z = r.data.z_noiseless = None
    seeds.append(s)
  return across_folds(all_scored, seeds)


def _per_roi(config, workdir, scored) -> dict[str, Any] | None:
  """train.rois: one model per target ROI (WORKDIR/rois/<roi>/), each
  scored on its test pairs with its ceiling and baselines (the same images
  and split; the run's own ROI reuses its scores)."""
  rois = [str(r) for r in config.train.get('rois', ())]
  if not rois or config.pairs.leaked:
    return None
  out = {}
  for roi in dict.fromkeys(rois):
    if roi == config.data.roi:
      sc = scored
    else:
      c = config.copy_and_resolve_references()
      with c.unlocked():
        c.data.roi, c.train.run_leaked, c.pairs.folds = roi, False, 1
      r = train.train(c, workdir / 'rois' / roi, data_dir=workdir)
      sc = test_scores(c, r)
      r.data.z = r.data.z_noiseless = None
    out[roi] = dict(
      scores={
        k: {
          s: {q: v[q] for q in ('value', 'low', 'high')} for s, v in st.items()
        }
        for k, st in sc['scores'].items()
      },
    )
  return out


def run(config, workdir: str | Path) -> dict[str, Any]:
  """Trains (and the leaked variant if configured); writes the outputs.

  Returns:
    The results.json 'train' entry.
  """
  workdir = paths.path(workdir)
  result = train.train(config, workdir)
  scored = test_scores(config, result)
  folds = _folds(config, workdir, scored)
  per_roi = _per_roi(config, workdir, scored)
  # The leaked run reads the responses again: free this run's copy first.
  result.data.z = result.data.z_noiseless = None
  leaked = leaked_scored = None
  if config.train.run_leaked and not config.pairs.leaked:
    cl = config.copy_and_resolve_references()
    with cl.unlocked():
      cl.pairs.leaked = True
      cl.train.run_leaked = False
      # As many test pairs as the image-disjoint run: equal footing.
      cl.train.test_pairs = int(result.test['n_pairs'])
    # The same subject and embeddings: read from this run's workdir.
    leaked = train.train(cl, workdir / 'leaked', data_dir=workdir)
    leaked_scored = test_scores(cl, leaked)
    leaked.data.z = leaked.data.z_noiseless = None
  return write(
    config, workdir, result, scored, leaked, leaked_scored, folds, per_roi
  )


# The reference study's figures (../shared/reference/study-report.md):
# NSD subj01, CLIP ViT-B/32 (THINGSvision) embeddings, all visual cortex.
STUDY = {
  'rsa_correlation': 0.288,  # embedding RDM vs 1 - Pearson fMRI RDM
  'rsa_euclidean': 0.162,  # embedding RDM vs Euclidean fMRI RDM
  'cnn_spearman': 0.0065,  # Siamese CNN, V1, linear output
  'cnn_r2': -0.0039,
}


def study_rows(res: dict, rdm: dict | None) -> list[list[Any]]:
  """The study's figures beside this run's: (what, study, rdmjax, note)."""
  rows = []
  roi = res['roi']
  metrics = ((rdm or {}).get('rois', {}).get(roi) or {}).get('metrics', {})
  for m, key in (
    ('correlation', 'rsa_correlation'),
    ('euclidean', 'rsa_euclidean'),
  ):
    rsa = metrics.get(m, {}).get('rsa', {})
    if rsa:
      src, v = next(iter(rsa.items()))
      ci = v.get('interval')
      got = f'{v["spearman"]:.3f}' + (
        f' [{ci[0]:.3f}, {ci[1]:.3f}]' if ci else ''
      )
      rows.append(
        [f'embedding RSA, ROI {roi}, fMRI {m}', STUDY[key], f'{got} ({src})']
      )
  sc = res['scores']['model']
  what = 'Siamese CNN' if res['model'] == 'siamese_cnn' else res['model']
  rows.append(
    [
      f'{what}, image-disjoint test pairs: Spearman',
      f'{STUDY["cnn_spearman"]} (Siamese CNN, V1)',
      _ci(sc['spearman']),
    ]
  )
  rows.append(
    [
      f'{what}, image-disjoint test pairs: R^2',
      f'{STUDY["cnn_r2"]} (Siamese CNN); below 0 (MLP)',
      _ci(sc['r2']),
    ]
  )
  if 'leaked' in res:
    lk = res['leaked']['scores']['model']
    rows.append(
      [
        f'{what}, leaked test pairs: R^2',
        'above 0 (MLP, Figures 6-9)',
        _ci(lk['r2']),
      ]
    )
  return rows


def _public(scored: dict | None) -> dict | None:
  return (
    None
    if scored is None
    else {k: v for k, v in scored.items() if not k.startswith('_')}
  )


def write(
  config,
  workdir: Path,
  run: train.TrainResult,
  scored: dict[str, Any],
  leaked: train.TrainResult | None = None,
  leaked_scored: dict[str, Any] | None = None,
  folds: dict[str, Any] | None = None,
  per_roi: dict[str, Any] | None = None,
) -> dict:
  """results.json 'train', figures/, report section 'train'."""
  workdir = paths.path(workdir)
  data = run.data
  sc = scored['scores']
  res: dict[str, Any] = dict(
    model=config.model.name,
    roi=config.data.roi,
    metric=config.pairs.metric,
    embeddings=(
      None if config.model.name == 'siamese_cnn' else config.data.embeddings
    ),
    n_images={k: len(v) for k, v in data.split.items()},
    n_vertices=int(data.meta['n_vertices']),
    **run.summary(),
    # Point values on the test pairs (intervals under 'scores').
    ceiling=_point(sc, 'ceiling'),
    zero_shot_rsa=_point(sc, 'zero_shot'),
    fraction_of_ceiling=_point(sc, 'model', 'fraction_of_ceiling'),
    scores=sc,
    encoding=scored.get('encoding'),
    bootstrap=int(config.train.bootstrap),
  )
  if folds is not None:
    res['folds'] = folds
  if per_roi is not None:
    res['rois'] = per_roi
  if leaked is not None:
    res['leaked'] = dict(leaked.summary(), **_public(leaked_scored))
    res['leaked_minus_disjoint'] = leaked_minus_disjoint(scored, leaked_scored)
  figs = workdir / 'figures'
  curves = {'image-disjoint': run.rows}
  if leaked is not None:
    curves['leaked'] = leaked.rows
  res['figures'] = {
    'learning_curves': 'figures/'
    + train_plots.learning_curves(curves, figs / 'train_curves.png').name
  }
  runs = {'image-disjoint': sc}
  if folds is not None:
    runs[f'mean over {folds["n"]} splits (t interval)'] = {
      k: v for k, v in folds.items() if k in LABELS
    }
  if leaked_scored is not None:
    runs['leaked'] = leaked_scored['scores']
  res['figures']['test_scores'] = (
    'figures/'
    + train_plots.score_intervals(runs, LABELS, figs / 'train_scores.png').name
  )
  if per_roi is not None:
    res['figures']['rois'] = (
      'figures/' + train_plots.per_roi(per_roi, figs / 'train_rois.png').name
    )
  if run.mats is not None:
    res['figures'].update(
      train_plots.test_figures(run.mats, run.test, figs, 'train')
    )
  res['study'] = study_rows(res, report.read_results(workdir).get('rdm'))
  report.update_results(workdir, 'train', res)
  report.write_section(workdir, 'train', _markdown(res))
  return res


def _ci(d: dict | None) -> str:
  """'0.432 [0.401, 0.460]' from a {value, low, high} dict."""
  if not d or d.get('value') is None or not np.isfinite(d['value']):
    return '-'
  return f'{d["value"]:.3f} [{d["low"]:.3f}, {d["high"]:.3f}]'


def _pairs_cell(t: dict[str, Any]) -> str:
  """'n' for every pair of the split, 'n of N (seeded subset)' else."""
  n, n_all = t['n_pairs'], t.get('n_all', t['n_pairs'])
  return f'{n:,}' if n == n_all else f'{n:,} of {n_all:,} (seeded subset)'


def _score_table(scores: dict) -> str:
  rows = []
  for name in ('model', 'ridge', 'reweighted', 'zero_shot', 'ceiling'):
    if name not in scores:
      continue
    s = scores[name]
    rows.append(
      [
        LABELS[name],
        _ci(s['spearman']),
        _ci(s['pearson']),
        _ci(s['r2']) if name in ('model', 'reweighted') else '-',
        _ci(s.get('fraction_of_ceiling')),
      ]
    )
  return report.md_table(['', 'Spearman', 'Pearson', 'R^2', 'of ceiling'], rows)


def _markdown(res: dict[str, Any]) -> str:
  lines = [
    '## Training: predicted dissimilarity of held-out pairs',
    '',
    f'Model `{res["model"]}` on ROI `{res["roi"]}`, target '
    f'`{res["metric"]}`, {res["steps"]} steps of '
    f'{res["pairs_per_step"]} pairs; images split '
    f'{res["n_images"]} (train/val/test). Test scores from the checkpoint '
    f'with the best validation Spearman (step {res["best_step"]}). Every '
    f'score: value on the test pairs [95% interval, bootstrap over test '
    f'images, {res["bootstrap"]} draws], each baseline on the same pairs.',
    '',
    f'### Image-disjoint split: {_pairs_cell(res["test"])} test pairs of '
    f'{res["n_images"]["test"]} test images',
    '',
    _score_table(res['scores']),
  ]
  enc = res.get('encoding')
  if enc:
    nc = (
      f'; 100 r^2 / noise ceiling: median {enc["nc_score_median"]:.1f}, '
      f"mean {enc['nc_score_mean']:.1f} (the Algonauts devkit's score)"
      if 'nc_score_median' in enc
      else ''
    )
    lines += [
      f'Ridge encoding per vertex on the {enc["n_images"]} test images: '
      f'Pearson r median {enc["r_median"]:.3f}, mean {enc["r_mean"]:.3f} '
      f'over {enc["n_vertices"]} vertices{nc}.',
      '',
    ]
  if 'folds' in res:
    fo = res['folds']
    rows = [
      [
        LABELS[name],
        _ci(fo[name].get('spearman')),
        _ci(fo[name].get('fraction_of_ceiling')),
      ]
      for name in ('model', 'ridge', 'reweighted', 'zero_shot', 'ceiling')
      if name in fo
    ]
    lines += [
      f'Over {fo["n"]} image splits (seeds {fo["seeds"]}; this one is the '
      'first): mean [95% t interval over the splits].',
      '',
      report.md_table(['', 'Spearman', 'of ceiling'], rows),
    ]
  if 'rois' in res:
    rows = [
      [
        roi,
        _ci(v['scores']['model']['spearman']),
        _ci(v['scores'].get('ceiling', {}).get('spearman')),
        _ci(v['scores']['model'].get('fraction_of_ceiling')),
      ]
      for roi, v in res['rois'].items()
    ]
    lines += [
      '### Target ROI by ROI (one model each, same split)',
      '',
      report.md_table(['ROI', 'Spearman', 'ceiling', 'of ceiling'], rows),
    ]
  if 'leaked' in res:
    lk, d = res['leaked'], res['leaked_minus_disjoint']
    what = (
      'fraction of its own ceiling' if d['stat'] != 'spearman' else ('Spearman')
    )
    lines += [
      f'### Leaked split (pairs, not images, split: the reference study): '
      f'{lk["n_pairs"]:,} test pairs of {lk["n_images"]:,} images',
      '',
      _score_table(lk['scores']),
      f'Leaked minus image-disjoint ({what}, each run on its own test '
      f'pairs, as many of each): **{_ci(d)}**. Test images of the leaked '
      'run were seen in training pairs; same steps and batch size.',
      '',
    ]
  if res.get('study'):
    lines += [
      '### The reference study side by side',
      '',
      report.md_table(
        ['', 'study (NSD subj01, CLIP)', 'this run'], res['study']
      ),
      'What differs: the study used real NSD data (subj01) and CLIP '
      'ViT-B/32 embeddings, split pairs rather than images for its MLP '
      'results (leaked), and reported single numbers without intervals; '
      'this run uses the data and embeddings configured here (the default: '
      'the synthetic subject and its embeddings), images split before '
      'pairing, and intervals from a bootstrap over test images.',
      '',
    ]
  lines += [
    "- R^2 only where a prediction is fitted to the targets' values (the "
    'trained model, the reweighted RSA); the others are scored by rank and '
    'linear correlation.',
    "- The ceiling is the noiseless targets' Spearman with the noisy "
    'ones: what a perfect model of the expected responses would score. '
    'It is not a strict upper bound (1 - r is nonlinear and images have '
    '1 to 3 repeats), so a fraction above 1 is possible.',
    '',
  ]
  for key, title in (
    ('test_scores', 'Test scores with 95% intervals'),
    ('rois', 'Test Spearman and ceiling per target ROI'),
    ('learning_curves', 'Learning curves'),
    ('test_rdms', 'True vs predicted RDM of the test images'),
    ('test_scatter', 'Predicted vs true, test pairs'),
  ):
    if key in res['figures']:
      lines.append(f'![{title}]({res["figures"][key]})')
      lines.append('')
  return '\n'.join(lines)
