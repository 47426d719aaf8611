"""The RDM analysis of one ROI x metric, and the inputs it needs.

`analyse` computes the RDM whole, once (n x n f32: 387 MB at NSD size, on
the accelerator, or in host memory on a CPU backend; never a second Gram
product), and from it the extreme pairs, a
histogram and the moments (`summary.matrix_stats`), the heatmap (block
means above `rdm.max_images` images), the condensed triangle when it is
kept, and the RSA against every embedding source and the noiseless
ceiling. The rdm stage (`rdmjax.stages.rdm`) runs it over ROIs and metrics
and writes the figures and the report; the docs' RDM page says what each
number means.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rdmjax.rsa import compare, inference, repeats, summary
from rdmjax.rsa import rdm as rdm_lib

DISPLAY_SIZE = 1000  # heatmap side above max_images images
CEILING = '\x00ceiling'  # the noiseless RDM among the compared sources
KINDS = (
  ('lowest', 'most similar (lowest)'),
  ('closest', 'closest to 1'),
  ('highest', 'least similar (highest)'),
)


@dataclasses.dataclass(frozen=True)
class Options:
  """How `analyse` computes (the rdm stage fills it from `config.rdm`:
  `rdmjax.stages.rdm.analysis_options`).

  Attributes:
    precision: of `rdmjax.rsa.rdm.rdm`.
    top_k: extreme pairs kept of each kind.
    bins: histogram bins.
    max_images: the largest n whose heatmap shows each image.
    bootstrap: at most this many bootstrap draws of the RSA (0: none).
    permutations: at most this many permutations of its test (0: none).
    seed: of the draws and permutations.
  """

  precision: str = 'float32'
  top_k: int = 5
  bins: int = 100
  max_images: int = 1000
  bootstrap: int = 0
  permutations: int = 0
  seed: int = 0


def stage_impl(precision: str) -> str:
  """The RDM path of the rdm stage: on a CPU backend always the host BLAS
  Gram (nothing compiled per ROI width: a stage meets many widths, and a
  compile costs more than BLAS's overhead on small inputs); elsewhere
  `rdmjax.rsa.rdm.rdm`'s 'auto'."""
  cpu = jax.default_backend() == 'cpu' and precision != 'bf16'
  return 'blas' if cpu else 'auto'


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


def display_matrix(
  r: jax.Array, max_images: int, size: int = DISPLAY_SIZE, order=None
) -> np.ndarray:
  """The heatmap: r itself, or its block means if n > max_images.

  Args:
    r: [n, n] RDM (on device).
    max_images: the largest n shown entry by entry.
    size: above that, average square blocks of ceil(n / size) images.
    order: [n] the images in this order (before block means, so that
      blocks follow it), or None: image order.

  Returns:
    [n, n] or [~size, ~size] f32 on the host.
  """
  if r.shape[0] <= max_images:
    # Small enough to see whole: reordered on the host (a gather of the
    # same values, and no program compiled per n).
    r = np.asarray(r)
    return r if order is None else r[np.ix_(order, order)]
  if order is not None:
    r = _restrict(r, np.asarray(order, np.int32))
  return np.asarray(_block_mean(r, size))


def display_block(n: int, max_images: int, size: int = DISPLAY_SIZE) -> int:
  """Images per row of `display_matrix`'s heatmap (1: no block means)."""
  return 1 if n <= max_images else -(-n // size)


def _extremes(summ, ids: np.ndarray) -> dict[str, list[dict]]:
  out = {}
  for kind, _ in KINDS:
    e = getattr(summ, kind)
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


def colour_limits(heat: np.ndarray, hist: dict) -> tuple[float, float]:
  """1st and 99th percentiles of the values shown, so the zero diagonal does
  not set the scale; of the block means when the heatmap averages blocks."""
  n = heat.shape[0]
  if n * (n - 1) // 2 == hist['counts'].sum():  # the RDM itself
    return tuple(
      _quantile(hist['counts'], hist['edges'], q) for q in (0.01, 0.99)
    )
  off = heat[~np.eye(n, dtype=bool)]
  return tuple(float(v) for v in np.percentile(off, [1, 99]))


@jax.jit
def _restrict(r: jax.Array, idx: jax.Array) -> jax.Array:
  """The RDM of a subset of its images: r[idx][:, idx]."""
  return r[idx[:, None], idx[None, :]]


# Work caps of the RSA's uncertainty: bootstrap draws x pairs and
# permutations x pairs (at 3000 images, 4.5M pairs: 111 draws and 444
# permutations; at 600 images all 1000 of each).
BOOT_WORK, PERM_WORK = 5e8, 2e9


def _uncertainty(rsa: dict, fmri, others: dict, opts: Options) -> None:
  """Adds to each rsa[source]: the 95% interval of its Spearman (bootstrap
  over the RSA images, at most `opts.bootstrap` draws) and the p-value of a
  permutation test of the images' labels (at most `opts.permutations`; 0:
  none); fewer (never below 100) where draws x pairs would pass the caps
  above. The numbers used are recorded ('draws', 'n_perm')."""
  if not others:
    return
  n = fmri.shape[0]
  m = n * (n - 1) // 2
  draws = min(opts.bootstrap, max(100, int(BOOT_WORK // m)))
  perms = min(opts.permutations, max(100, int(PERM_WORK // m)))
  if draws:
    i, j = np.triu_indices(n, 1)
    up = {k: np.asarray(compare.upper_triangle(v)) for k, v in others.items()}
    got = inference.bootstrap_pair_scores(
      i,
      j,
      up,
      np.asarray(compare.upper_triangle(fmri)),
      n,
      n_boot=draws,
      seed=opts.seed,
    )
    for k, v in got.items():
      s = v['spearman']
      rsa[k].update(interval=[s['low'], s['high']], draws=draws)
  if perms:
    for k, v in others.items():
      t = inference.permutation_test(fmri, v, perms, opts.seed)
      rsa[k].update(p=t['p'], n_perm=perms)


def analyse(
  x: np.ndarray,
  metric: str,
  ids: np.ndarray,
  opts: Options,
  emb_rdms: dict[str, jax.Array],
  subset: np.ndarray | None,
  noiseless: np.ndarray | None,
  reps: np.ndarray | None = None,
  keep_rdm=None,
  order: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
  """One ROI x metric: extremes, histogram, moments, heatmap, RSA.

  Args:
    x: [n_images, v] f32 responses (standardised if configured).
    metric: an RDM metric.
    ids: [n_images] NSD ids.
    opts: how to compute (`Options`).
    emb_rdms: source -> [m, m] correlation RDM of its embeddings over the
      RSA images (m = n, or len(subset)).
    subset: [m] image indices of the RSA, or None for all.
    noiseless: [n_images, v] f32 noiseless responses, or None.
    reps: [n_images] repeat counts (`rdmjax.rsa.repeats`), or None.
    keep_rdm: called with the RDM's condensed upper triangle ([n(n-1)/2]
      f32, scipy squareform order), e.g. to save it; None: not kept.
    order: [n_images] the heatmap's images in this order (before block
      means; `display_matrix`), or None: image order.

  Returns:
    (results dict, heatmap [s, s] f32 with s = n or ~DISPLAY_SIZE).
  """
  impl = stage_impl(opts.precision)
  # One RDM, and every number from it: no second Gram product.
  full = rdm_lib.rdm(x, metric, precision=opts.precision, impl=impl)
  summ, mean, std = summary.matrix_stats(
    full,
    k=opts.top_k,
    closest_to=1.0 if metric == 'correlation' else None,
    bins=opts.bins,
    metric=metric,
  )
  heat = display_matrix(full, opts.max_images, order=order)
  if keep_rdm is not None:
    keep_rdm(np.asarray(compare.upper_triangle(full)))
  rep_bias = None if reps is None else repeats.bias(full, reps, metric)
  part = full if subset is None else _restrict(full, subset.astype(np.int32))
  del full
  others = dict(emb_rdms)
  if noiseless is not None:
    nl = noiseless if subset is None else noiseless[subset]
    others[CEILING] = rdm_lib.rdm(
      nl, metric, precision=opts.precision, impl=impl
    )
  # The fMRI RDM is ranked once for every comparison.
  rsa = compare.compare_many(part, others)
  _uncertainty(rsa, part, others, opts)
  ceiling = rsa.pop(CEILING, None)
  n = x.shape[0]
  out = {
    'n_images': n,
    'n_vertices': x.shape[1],
    'n_pairs': n * (n - 1) // 2,
    'min': float(summ.lowest.values[0]),
    'max': float(summ.highest.values[0]),
    'mean': mean,
    'std': std,
    'extremes': _extremes(summ, ids),
    'histogram': {'counts': summ.hist_counts, 'edges': summ.hist_edges},
    'heatmap': 'full' if heat.shape[0] == n else f'block means {heat.shape}',
    'rsa': rsa,
    'ceiling': ceiling,
    'repeats': rep_bias,
  }
  return out, heat
