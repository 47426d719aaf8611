"""`--mode=train`: trains, scores the test pairs, writes results and report.

Beside the model's test scores it puts what they mean: the ceiling (for the
synthetic subject: how well the noiseless responses' targets rank-correlate
with the noisy ones on the same test pairs), the zero-shot RSA of the same
embeddings on the same pairs, and, with `train.run_leaked`, the leaked
variant trained on the same budget into WORKDIR/leaked (the reference
study's mistake, measured).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rdmjax import baselines, paths, report, train
from rdmjax.report import train_plots


def _baselines(config, data) -> dict[str, Any]:
  test = data.split['test']
  metric = config.pairs.metric
  out: dict[str, Any] = {'ceiling': None, 'zero_shot_rsa': None}
  if data.z_noiseless is not None and not config.pairs.leaked:
    out['ceiling'] = baselines.ceiling_rsa(
      data.z_noiseless, data.z, test, metric
    )
  if data.emb is not None and not config.pairs.leaked:
    out['zero_shot_rsa'] = baselines.zero_shot_rsa(
      data.emb, data.z, test, metric
    )
  return out


def run(config, workdir: str | Path) -> dict[str, Any]:
  """Trains (and the leaked variant if configured); writes the outputs.

  Returns:
    The results.json 'train' entry.
  """
  workdir = paths.path(workdir)
  result = train.train(config, workdir)
  base = _baselines(config, result.data)
  # The leaked run reads the responses again: free this run's copy first.
  result.data.z = result.data.z_noiseless = None
  leaked = None
  if config.train.run_leaked and not config.pairs.leaked:
    cl = config.copy_and_resolve_references()
    with cl.unlocked():
      cl.pairs.leaked = True
      cl.train.run_leaked = False
    # The same subject and embeddings: read from this run's workdir.
    leaked = train.train(cl, workdir / 'leaked', data_dir=workdir)
  return write(config, workdir, result, leaked, base)


def write(
  config,
  workdir: Path,
  run: train.TrainResult,
  leaked: train.TrainResult | None,
  base: dict[str, Any] | None = None,
) -> dict:
  """results.json 'train', figures/, report section 'train'.

  base: `_baselines` of run.data, when its responses are gone already.
  """
  workdir = paths.path(workdir)
  data = run.data
  res: dict[str, Any] = dict(
    model=config.model.name,
    roi=config.data.roi,
    metric=config.pairs.metric,
    embeddings=config.data.embeddings if config.model.name == 'mlp' else None,
    n_images={k: len(v) for k, v in data.split.items()},
    n_vertices=int(data.meta['n_vertices']),
    **run.summary(),
    **(_baselines(config, data) if base is None else base),
  )
  if res['ceiling']:
    res['fraction_of_ceiling'] = res['test']['spearman'] / res['ceiling']
  if leaked is not None:
    res['leaked'] = leaked.summary()
  figs = workdir / 'figures'
  curves = {'image-disjoint': run.rows}
  if leaked is not None:
    curves['leaked'] = leaked.rows
  res['figures'] = {
    'learning_curves': 'figures/'
    + train_plots.learning_curves(curves, figs / 'train_curves.png').name
  }
  if run.mats is not None:
    res['figures'].update(
      train_plots.test_figures(run.mats, run.test, figs, 'train')
    )
  report.update_results(workdir, 'train', res)
  report.write_section(workdir, 'train', _markdown(res))
  return res


def _pairs_cell(t: dict[str, Any]) -> str:
  """'n' for every pair of the split, 'n of N (seeded subset)' else."""
  n, n_all = t['n_pairs'], t.get('n_all', t['n_pairs'])
  return f'{n:,}' if n == n_all else f'{n:,} of {n_all:,} (seeded subset)'


def _markdown(res: dict[str, Any]) -> str:
  rows = []
  for name, r in (('image-disjoint', res), ('leaked', res.get('leaked'))):
    if r is None:
      continue
    t = r['test']
    frac = t['spearman'] / res['ceiling'] if res['ceiling'] else None
    rows.append(
      [
        name,
        t['r2'],
        t['pearson'],
        t['spearman'],
        '-' if frac is None else frac,
        _pairs_cell(t),
      ]
    )
  lines = [
    '## Training: predicted dissimilarity of held-out pairs',
    '',
    f'Model `{res["model"]}` on ROI `{res["roi"]}`, target '
    f'`{res["metric"]}`, {res["steps"]} steps of '
    f'{res["pairs_per_step"]} pairs; images split '
    f'{res["n_images"]} (train/val/test). Test scores from the checkpoint '
    f'with the best validation Spearman (step {res["best_step"]}).',
    '',
    report.md_table(
      ['split', 'R^2', 'Pearson', 'Spearman', 'of ceiling', 'test pairs'],
      rows,
    ),
  ]
  if res['ceiling'] is not None:
    lines.append(
      f'- Ceiling (noiseless vs noisy targets, same test pairs): Spearman '
      f'{res["ceiling"]:.4f}.'
    )
  if res['zero_shot_rsa'] is not None:
    lines.append(
      f'- Zero-shot RSA of the same embeddings (1 - Pearson of embeddings '
      f'vs target, same test pairs): Spearman {res["zero_shot_rsa"]:.4f}.'
    )
  if 'leaked' in res:
    lines.append(
      '- Leaked: pairs, not images, split (the reference study): test '
      'images were seen in training pairs; same steps and batch size.'
    )
  lines.append('')
  for key, title in (
    ('learning_curves', 'Learning curves'),
    ('test_rdms', 'True vs predicted RDM of the test images'),
    ('test_scatter', 'Predicted vs true, test pairs'),
  ):
    if key in res['figures']:
      lines.append(f'![{title}]({res["figures"][key]})')
      lines.append('')
  return '\n'.join(lines)
