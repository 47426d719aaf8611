"""`--mode=group`: the group-level section of a run over several subjects.

  rdmjax --workdir=DIR --config.data.subjects=all    # pipeline per subject,
                                                     # then this section

Reads each subject's results (WORKDIR/subjNN/results.json) and writes
results.json's `group` entry and report.md's group section:

- every headline number per subject and its mean +- SEM across subjects
  with a 95% t interval (`rdmjax.rsa.group.mean_sem`): RSA per ROI x metric and
  embedding source, and the trained model's and baselines' test Spearman
  and fraction of ceiling; a figure with subjects as points;
- inter-subject consistency and the real-data ceiling, per ROI x metric,
  over the training images every subject saw (by NSD id): the Spearman of
  every pair of subjects' RDMs, and rsatoolbox's leave-one-subject-out
  lower and upper noise-ceiling bounds (`rdmjax.rsa.group.noise_ceiling`);
- which subjects failed, and why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from rdmjax import data, paths, report
from rdmjax.data.inputs import responses
from rdmjax.report import figures
from rdmjax.report import group as group_report
from rdmjax.rsa import group, inference
from rdmjax.rsa import rdm as rdm_lib
from rdmjax.rsa.analysis import BOOT_WORK
from rdmjax.training import checkpoints as checkpoint
from rdmjax.training import evaluation as evaluate
from rdmjax.training import loop as train


def _headlines(res: dict) -> dict[str, float]:
  """Flat 'kind / name' -> value of one subject's results.json."""
  out = {}
  for roi, e in res.get('rdm', {}).get('rois', {}).items():
    for m, v in e['metrics'].items():
      for src, r in v.get('rsa', {}).items():
        out[f'RSA {roi} {m} {src}'] = r['spearman']
      if v.get('ceiling'):
        out[f'RSA ceiling {roi} {m}'] = v['ceiling']['spearman']
  sc = res.get('train', {}).get('scores', {})
  for name, st in sc.items():
    out[f'test {name} Spearman'] = st['spearman']['value']
    if 'fraction_of_ceiling' in st:
      out[f'test {name} of ceiling'] = st['fraction_of_ceiling']['value']
  return out


def consistency(config, workdir, names: list[str]) -> dict[str, Any]:
  """Per ROI x metric, over the training images all subjects share:
  pairwise Spearman of the subjects' RDMs and the noise-ceiling bounds."""
  c = config.rdm
  subs = {
    s: data.subject_from_config(
      data.subject_run(config, workdir, s)[0], workdir
    )
    for s in names
  }
  common, rows = group.shared_images(
    {s: x.nsd_ids('train') for s, x in subs.items()}
  )
  out: dict[str, Any] = {'n_shared': int(len(common))}
  if len(common) < 3 or len(subs) < 2:
    return out
  for roi in dict.fromkeys(c.rois):
    for metric in c.metrics:
      rdms = {}
      for s, x in subs.items():
        try:
          z = responses(x, roi, 'train', c.standardize, rows[s])
        except Exception as e:  # an ROI one subject lacks
          logging.warning('%s: %s skipped in the group ceiling: %s', s, roi, e)
          continue
        rdms[s] = np.asarray(rdm_lib.rdm(z, metric))
      if len(rdms) < 2:
        continue
      cons = group.intersubject_consistency(rdms)
      nc = group.noise_ceiling(rdms, 'spearman')
      out[f'{roi} {metric}'] = dict(
        subjects=cons['subjects'],
        matrix=cons['matrix'],
        mean=cons['mean'],
        lower=nc['lower'],
        upper=nc['upper'],
      )
      draws = _draws(c, len(common), len(rdms))
      if draws:
        out[f'{roi} {metric}']['intervals'] = group.consistency_bootstrap(
          rdms, draws, int(config.seed)
        )
  return out


def _draws(c, n: int, k: int) -> int:
  """Bootstrap draws for the consistency intervals: rdm.bootstrap, fewer
  where S(S-1)/2 + 2S Spearman series of n(n-1)/2 pairs would exceed 4
  times the RSA's work cap (`rdmjax.rsa.analysis.BOOT_WORK`)."""
  want = int(c.get('bootstrap', 0))
  work = n * (n - 1) // 2 * (k * (k - 1) // 2 + 2 * k)
  return min(want, max(50, int(4 * BOOT_WORK // max(work, 1)))) if want else 0


def _predict_all(config, workdir, test_name, ckpts, errors):
  """Every subject's best checkpoint's predictions of test_name's test
  pairs: ({train subject: [P] f32}, the EvalSet); a checkpoint that fails
  leaves its error in errors['train->test']."""
  ck = config.ckpt
  cb, sub = data.subject_run(config, workdir, test_name)
  prep = train.prepare(cb, sub)
  eval_fn = evaluate.make_eval_fn(prep.graphdef, cb, prep.mesh)
  es = evaluate.eval_set(prep.data, 'test', cb, prep.mesh)
  want = {key: prep.data.meta[key] for key in ('model', 'd_in')}
  preds = {}
  for train_name, path in ckpts.items():
    try:
      mngr = checkpoint.manager(
        path, ck.every, ck.keep, ck.keep_best, read_only=True
      )
      step = checkpoint.pick_step(mngr, 'best')
      state, _ = checkpoint.restore(mngr, step, prep.abstract, want)
      mngr.close()
      preds[train_name] = evaluate.predict(
        eval_fn, state['params'], prep.device_data, es
      )
    except Exception as e:  # noqa: BLE001 (recorded in the matrix's place)
      errors[f'{train_name}->{test_name}'] = f'{type(e).__name__}: {e}'[:300]
  return preds, es


def transfer(config, workdir, names: list[str]) -> dict[str, Any] | None:
  """Cross-subject transfer: each subject's trained model (its best
  checkpoint) scored on every subject's test pairs with that subject's
  responses: [train subject, test subject] test Spearman. Pair models
  predict any image pair, so a model of one brain is scored on another.

  Per test subject, all models are scored on the same pairs with the same
  bootstrap draws over its test images (`rdmjax.rsa.inference`): every entry gets
  a 95% interval, and the column its own model minus the mean of the
  other subjects' models, a paired difference with its interval.
  """
  ckpts = {s: workdir / s / 'ckpt' for s in names}
  ckpts = {s: p for s, p in ckpts.items() if p.is_dir()}
  if len(ckpts) < 2:
    return None
  k = len(names)
  m, low, high = (np.full((k, k), np.nan) for _ in range(3))
  errors, own_minus_other = {}, {}
  for b, test_name in enumerate(names):
    preds, es = _predict_all(config, workdir, test_name, ckpts, errors)
    if not preds:
      continue
    ia, ib = np.searchsorted(es.images, es.i), np.searchsorted(es.images, es.j)
    got = inference.bootstrap_pair_scores(
      ia,
      ib,
      preds,
      es.target,
      len(es.images),
      n_boot=int(config.train.bootstrap) or 1,
      seed=int(config.seed),
    )
    for a, train_name in enumerate(names):
      if train_name in got:
        sp = got[train_name]['spearman']
        m[a, b], low[a, b], high[a, b] = sp['value'], sp['low'], sp['high']
    others = [o for o in got if o != test_name]
    if test_name in got and others:
      d = {
        key: np.mean([got[o]['spearman'][key] for o in others], axis=0)
        for key in ('value', 'samples')
      }
      own = got[test_name]['spearman']
      diff = inference.summarize(
        own['value'] - d['value'], own['samples'] - d['samples']
      )
      own_minus_other[test_name] = {
        key: v for key, v in diff.items() if key != 'samples'
      }
  return dict(
    subjects=names,
    matrix=m,
    low=low,
    high=high,
    own_minus_other=own_minus_other,
    own_minus_other_mean=group.mean_sem(
      {s: v['value'] for s, v in own_minus_other.items()}
    ),
    errors=errors,
  )


def run(config, workdir: str | Path) -> dict[str, Any]:
  """Writes the group section from the subjects' results."""
  workdir = paths.path(workdir)
  names = data.subjects(config)
  per, failed = {}, {}
  for s in names:
    f = workdir / s / 'results.json'
    err = workdir / s / 'error.txt'
    if err.is_file():  # written by the process that ran the subject
      failed[s] = err.read_text().strip()
      continue
    if not f.is_file():
      failed[s] = 'no results.json (the subject did not finish)'
      continue
    per[s] = _headlines(json.loads(f.read_text()))
  keys = list(dict.fromkeys(k for v in per.values() for k in v))
  summary = {k: group.mean_sem({s: per[s].get(k) for s in per}) for k in keys}
  res = dict(
    subjects=names,
    finished=sorted(per),
    failed=failed,
    summary=summary,
    consistency=consistency(config, workdir, sorted(per)) if per else {},
    transfer=transfer(config, workdir, sorted(per)) if per else None,
  )
  figs = workdir / 'figures'
  res['figures'] = {
    'group': 'figures/'
    + figures.draw(
      group_report.group_figure, per, summary, figs / 'group.png'
    ).name,
  }
  if res['transfer']:
    res['figures']['transfer'] = (
      'figures/'
      + figures.draw(
        group_report.transfer_figure, res['transfer'], figs / 'transfer.png'
      ).name
    )
  report.update_results(workdir, 'group', res)
  report.write_section(workdir, 'group', group_report.markdown(res))
  return res
