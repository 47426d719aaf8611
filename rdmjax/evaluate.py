"""Scoring held-out pairs: every pair of a split, in fixed-shape tiles.

`make_eval_fn` compiles one scorer of a padded tile (`pairs.tile_pairs`);
`score` runs it over every unordered pair of a split exactly once and
streams the metrics (`metrics.PairMetricsAccumulator`). Training scores
with it; `--mode=eval` (`rdmjax.stages.eval`) scores a saved checkpoint.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from rdmjax import metrics, pairs, sharding


def make_eval_fn(graphdef, config, mesh):
  """Jitted scorer of one padded tile (`pairs.tile_pairs`): one compile."""
  rep = sharding.replicated(mesh)
  bsh = sharding.batch_sharding(mesh)
  tile_sh = {
    k: (rep if k in ('rows', 'cols') else bsh)
    for k in ('rows', 'cols', 'ri', 'cj', 'i', 'j', 'mask')
  }

  def eval_fn(params, data, tp, split_id):
    eb = pairs.eval_batch(data, tp, config, split_id=split_id)
    model = nnx.merge(graphdef, params)
    hr = model.embed(data['x'][tp['rows']])
    hc = model.embed(data['x'][tp['cols']])
    pred = model.pair_head(hr[tp['ri']], hc[tp['cj']])
    return pred, eb['target'], eb['mask']

  fn = jax.jit(
    eval_fn,
    static_argnums=3,
    in_shardings=(rep, rep, tile_sh),
    out_shardings=rep,
  )
  return fn, tile_sh


def score(
  eval_fn,
  params,
  device_data,
  split_idx: np.ndarray,
  split_id: int,
  config,
  max_pairs: int = 0,
  keep_matrix: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray] | None]:
  """Scores every pair of a split (or the first tiles covering max_pairs).

  Returns:
    ({r2, pearson, spearman, n_pairs}, None or {'pred', 'true'} [m, m]
    matrices over split_idx, and 'pred_pairs', 'true_pairs' [P]).
  """
  fn, tile_sh = eval_fn
  tile = int(config.pairs.eval_tile)
  acc = metrics.PairMetricsAccumulator()
  m = len(split_idx)
  mats = (
    {'pred': np.zeros((m, m)), 'true': np.zeros((m, m))}
    if keep_matrix
    else None
  )
  pp, tt = [], []
  for rows, cols, same in pairs.eval_tiles(split_idx, tile):
    tp = pairs.tile_pairs(rows, cols, same, tile)
    tp = {k: jax.device_put(v, tile_sh[k]) for k, v in tp.items()}
    pred, target, mask = jax.device_get(
      fn(params, device_data, tp, int(split_id))
    )
    acc.update(pred, target, mask)
    if mats is not None:
      keep = mask > 0
      pp.append(pred[keep])
      tt.append(target[keep])
      i = np.asarray(jax.device_get(tp['i']))[keep]
      j = np.asarray(jax.device_get(tp['j']))[keep]
      # split_idx is sorted: image index -> position without a Python loop.
      a, b = np.searchsorted(split_idx, i), np.searchsorted(split_idx, j)
      for name, v in (('pred', pred[keep]), ('true', target[keep])):
        mats[name][a, b] = v
        mats[name][b, a] = v
    if max_pairs and acc.n >= max_pairs:
      break
  if mats is not None:
    mats['pred_pairs'] = np.concatenate(pp)
    mats['true_pairs'] = np.concatenate(tt)
  return acc.result(), mats


def score_test(eval_fn, params, device_data, data, config):
  """Every test pair, with the test RDMs kept for figures (not if leaked)."""
  return score(
    eval_fn,
    params,
    device_data,
    data.split['test'],
    pairs.SPLIT_ID['test'],
    config,
    keep_matrix=not config.pairs.leaked,
  )
