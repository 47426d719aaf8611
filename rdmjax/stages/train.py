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

from rdmjax import paths, report
from rdmjax.report import figures, train_plots
from rdmjax.report import train as train_report
from rdmjax.training import loop as train
from rdmjax.training import scoring


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
    all_scored.append(scoring.test_scores(c, r))
    r.data.z = r.data.z_noiseless = None
    seeds.append(s)
  return scoring.across_folds(all_scored, seeds)


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
      sc = scoring.test_scores(c, r)
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
  scored = scoring.test_scores(config, result)
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
    leaked_scored = scoring.test_scores(cl, leaked)
    leaked.data.z = leaked.data.z_noiseless = None
  return write(
    config, workdir, result, scored, leaked, leaked_scored, folds, per_roi
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
    ceiling=scoring.point(sc, 'ceiling'),
    zero_shot_rsa=scoring.point(sc, 'zero_shot'),
    fraction_of_ceiling=scoring.point(sc, 'model', 'fraction_of_ceiling'),
    scores=sc,
    encoding=scored.get('encoding'),
    bootstrap=int(config.train.bootstrap),
  )
  if folds is not None:
    res['folds'] = folds
  if per_roi is not None:
    res['rois'] = per_roi
  if leaked is not None:
    res['leaked'] = dict(leaked.summary(), **scoring.public(leaked_scored))
    res['leaked_minus_disjoint'] = scoring.leaked_minus_disjoint(
      scored, leaked_scored
    )
  figs = workdir / 'figures'
  curves = {'image-disjoint': run.rows}
  if leaked is not None:
    curves['leaked'] = leaked.rows
  res['figures'] = {
    'learning_curves': 'figures/'
    + figures.draw(
      train_plots.learning_curves, curves, figs / 'train_curves.png'
    ).name
  }
  runs = {'image-disjoint': sc}
  if folds is not None:
    runs[f'mean over {folds["n"]} splits (t interval)'] = {
      k: v for k, v in folds.items() if k in train_report.LABELS
    }
  if leaked_scored is not None:
    runs['leaked'] = leaked_scored['scores']
  res['figures']['test_scores'] = (
    'figures/'
    + figures.draw(
      train_plots.score_intervals,
      runs,
      train_report.LABELS,
      figs / 'train_scores.png',
    ).name
  )
  if per_roi is not None:
    res['figures']['rois'] = (
      'figures/'
      + figures.draw(train_plots.per_roi, per_roi, figs / 'train_rois.png').name
    )
  if run.mats is not None:
    res['figures'].update(
      train_plots.test_figures(run.mats, run.test, figs, 'train')
    )
  res['study'] = train_report.study_rows(
    res, report.read_results(workdir).get('rdm')
  )
  report.update_results(workdir, 'train', res)
  report.write_section(workdir, 'train', train_report.markdown(res))
  return res
