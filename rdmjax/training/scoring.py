"""A trained run scored on its test pairs, beside its baselines.

Every score comes with a 95% interval from a bootstrap over the test images
(`rdmjax.rsa.inference`), all on exactly the model's test pairs: the
ceiling (for the synthetic subject: how well the noiseless responses'
targets rank-correlate with the noisy ones), the zero-shot RSA of the
embeddings, a ridge encoding model's predicted RDM and the feature-
reweighted RSA (`rdmjax.training.baselines.test_pairs`). The train, eval
and sweep stages score this way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rdmjax.errors import InputError
from rdmjax.rsa import group, inference
from rdmjax.training import baselines
from rdmjax.training import checkpoints as checkpoint
from rdmjax.training import loop as train


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
  got = inference.bootstrap_pair_scores(
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


def point(scores: dict, name: str, stat: str = 'spearman') -> float | None:
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
  value = point(leaked['scores'], 'model', stat) - point(
    disjoint['scores'], 'model', stat
  )
  d = inference.difference_interval(a, b, value=value)
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


def public(scored: dict | None) -> dict | None:
  return (
    None
    if scored is None
    else {k: v for k, v in scored.items() if not k.startswith('_')}
  )


def restore(config, workdir: Path, prep, which: str):
  """(state, meta, step) of the checkpoint `which` names (for 'best' and
  'latest', the newest readable step if that one is damaged)."""
  if not (workdir / 'ckpt').is_dir():
    raise InputError(
      f'no checkpoint in {workdir / "ckpt"}: train first with --mode=train'
    )
  ck = config.ckpt
  mngr = checkpoint.manager(
    workdir / 'ckpt', ck.every, ck.keep, ck.keep_best, read_only=True
  )
  step = checkpoint.pick_step(mngr, which)
  if step is None:
    raise InputError(
      f'no finished checkpoint in {workdir / "ckpt"}: train first'
    )
  want = prep.data.meta
  if which.strip().isdigit():
    state, meta = checkpoint.restore(mngr, step, prep.abstract, want)
    return state, meta, step
  fallback = [step] + sorted(s for s in mngr.all_steps() if s != step)[::-1]
  return checkpoint.restore_newest(mngr, prep.abstract, want, fallback)
