"""report.md's train section (and the tables eval and sweep share), as a
function of results.json's 'train' entry."""

from __future__ import annotations

from typing import Any

import numpy as np

from rdmjax.report import md_table

# Names in tables and figures.
LABELS = {
  'model': 'trained model',
  'ridge': 'ridge encoding',
  'reweighted': 'reweighted RSA',
  'zero_shot': 'zero-shot RSA',
  'ceiling': 'ceiling (noiseless)',
}


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
      with_interval(sc['spearman']),
    ]
  )
  rows.append(
    [
      f'{what}, image-disjoint test pairs: R^2',
      f'{STUDY["cnn_r2"]} (Siamese CNN); below 0 (MLP)',
      with_interval(sc['r2']),
    ]
  )
  if 'leaked' in res:
    lk = res['leaked']['scores']['model']
    rows.append(
      [
        f'{what}, leaked test pairs: R^2',
        'above 0 (MLP, Figures 6-9)',
        with_interval(lk['r2']),
      ]
    )
  return rows


def with_interval(d: dict | None) -> str:
  """'0.432 [0.401, 0.460]' from a {value, low, high} dict."""
  if not d or d.get('value') is None or not np.isfinite(d['value']):
    return '-'
  return f'{d["value"]:.3f} [{d["low"]:.3f}, {d["high"]:.3f}]'


def pairs_cell(t: dict[str, Any]) -> str:
  """'n' for every pair of the split, 'n of N (seeded subset)' else."""
  n, n_all = t['n_pairs'], t.get('n_all', t['n_pairs'])
  return f'{n:,}' if n == n_all else f'{n:,} of {n_all:,} (seeded subset)'


def score_table(scores: dict) -> str:
  rows = []
  for name in ('model', 'ridge', 'reweighted', 'zero_shot', 'ceiling'):
    if name not in scores:
      continue
    s = scores[name]
    rows.append(
      [
        LABELS[name],
        with_interval(s['spearman']),
        with_interval(s['pearson']),
        with_interval(s['r2']) if name in ('model', 'reweighted') else '-',
        with_interval(s.get('fraction_of_ceiling')),
      ]
    )
  return md_table(['', 'Spearman', 'Pearson', 'R^2', 'of ceiling'], rows)


def _encoding(res: dict[str, Any]) -> list[str]:
  lines: list[str] = []
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
  return lines


def _folds(res: dict[str, Any]) -> list[str]:
  lines: list[str] = []
  if 'folds' in res:
    fo = res['folds']
    rows = [
      [
        LABELS[name],
        with_interval(fo[name].get('spearman')),
        with_interval(fo[name].get('fraction_of_ceiling')),
      ]
      for name in ('model', 'ridge', 'reweighted', 'zero_shot', 'ceiling')
      if name in fo
    ]
    lines += [
      f'Over {fo["n"]} image splits (seeds {fo["seeds"]}; this one is the '
      'first): mean [95% t interval over the splits].',
      '',
      md_table(['', 'Spearman', 'of ceiling'], rows),
    ]
  return lines


def _rois(res: dict[str, Any]) -> list[str]:
  lines: list[str] = []
  if 'rois' in res:
    rows = [
      [
        roi,
        with_interval(v['scores']['model']['spearman']),
        with_interval(v['scores'].get('ceiling', {}).get('spearman')),
        with_interval(v['scores']['model'].get('fraction_of_ceiling')),
      ]
      for roi, v in res['rois'].items()
    ]
    lines += [
      '### Target ROI by ROI (one model each, same split)',
      '',
      md_table(['ROI', 'Spearman', 'ceiling', 'of ceiling'], rows),
    ]
  return lines


def _leaked(res: dict[str, Any]) -> list[str]:
  lines: list[str] = []
  if 'leaked' in res:
    lk, d = res['leaked'], res['leaked_minus_disjoint']
    what = (
      'fraction of its own ceiling' if d['stat'] != 'spearman' else ('Spearman')
    )
    lines += [
      f'### Leaked split (pairs, not images, split: the reference study): '
      f'{lk["n_pairs"]:,} test pairs of {lk["n_images"]:,} images',
      '',
      score_table(lk['scores']),
      f'Leaked minus image-disjoint ({what}, each run on its own test '
      f'pairs, as many of each): **{with_interval(d)}**. Test images of the leaked '
      'run were seen in training pairs; same steps and batch size.',
      '',
    ]
  return lines


def _study(res: dict[str, Any]) -> list[str]:
  lines: list[str] = []
  if res.get('study'):
    lines += [
      '### The reference study side by side',
      '',
      md_table(['', 'study (NSD subj01, CLIP)', 'this run'], res['study']),
      'What differs: the study used real NSD data (subj01) and CLIP '
      'ViT-B/32 embeddings, split pairs rather than images for its MLP '
      'results (leaked), and reported single numbers without intervals; '
      'this run uses the data and embeddings configured here (the default: '
      'the synthetic subject and its embeddings), images split before '
      'pairing, and intervals from a bootstrap over test images.',
      '',
    ]
  return lines


def _steps(res: dict[str, Any]) -> str:
  """'200 steps', or where the run stopped on a validation plateau."""
  if res.get('stopped_at') is None:
    return f'{res["steps"]} steps'
  return (
    f'{res["stopped_at"]} of {res["steps"]} steps (stopped: validation '
    'Spearman had not risen for train.patience evaluations)'
  )


def markdown(res: dict[str, Any]) -> str:
  """report.md's train section from results.json's 'train' entry."""
  lines = [
    '## Training: predicted dissimilarity of held-out pairs',
    '',
    f'Model `{res["model"]}` on ROI `{res["roi"]}`, target '
    f'`{res["metric"]}`, {_steps(res)} of '
    f'{res["pairs_per_step"]} pairs; images split '
    f'{res["n_images"]} (train/val/test). Test scores from the checkpoint '
    f'with the best validation Spearman (step {res["best_step"]}). Every '
    f'score: value on the test pairs [95% interval, bootstrap over test '
    f'images, {res["bootstrap"]} draws], each baseline on the same pairs.',
    '',
    f'### Image-disjoint split: {pairs_cell(res["test"])} test pairs of '
    f'{res["n_images"]["test"]} test images',
    '',
    score_table(res['scores']),
  ]
  for part in (_encoding, _folds, _rois, _leaked, _study):
    lines += part(res)
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
