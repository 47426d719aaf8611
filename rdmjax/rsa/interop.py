"""RDMs in and out of rdmjax: rsatoolbox objects and .npz files.

`to_rsatoolbox` wraps one rdmjax RDM (square [n, n] or condensed
[n(n-1)/2], scipy `squareform` order: the entries i < j row by row, as
`rdmjax.rsa.compare.upper_triangle`) as an `rsatoolbox.rdm.RDMs`, with the
images' row index and NSD ids as pattern descriptors; `from_rsatoolbox`
gives one back as a square numpy matrix and its descriptors. The values are
passed as they are: rdmjax's 'euclidean' is the plain L2 distance, while
rsatoolbox's `calc_rdm(..., 'euclidean')` gives the squared distance over
the number of channels (`d ** 2 / n_channels`, labelled 'squared
euclidean'); 'correlation' (1 - Pearson r) is the same in both. Rank
measures (Spearman, Kendall) do not see that difference.

`save_rdms` / `load_rdms`: several condensed RDMs of the same images in one
.npz (no pickles), with their names, metrics and the images' NSD ids,
written through a temporary name and a rename.

rsatoolbox is optional (`pip install rsatoolbox`): it is imported only by
the two conversion functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy.spatial.distance import squareform

from rdmjax import files, paths
from rdmjax.errors import InputError
from rdmjax.rsa import compare

__all__ = [
  'RsaRdm',
  'SavedRdms',
  'condensed',
  'from_rsatoolbox',
  'load_rdms',
  'save_rdms',
  'to_rsatoolbox',
]

FORMAT = 'rdmjax.rdms/1'


def _rsatoolbox():
  try:
    # rsatoolbox, on first use: optional (the test and bench extras).
    import rsatoolbox
    import rsatoolbox.rdm  # noqa: F401
  except ImportError as e:
    raise InputError(
      'rsatoolbox is not installed: pip install rsatoolbox (or rdmjax[test])'
    ) from e
  return rsatoolbox


def condensed(rdm) -> np.ndarray:
  """rdm: square [n, n] or condensed [n(n-1)/2] (numpy or jax) -> the
  condensed upper triangle, entries i < j row by row (scipy `squareform`
  order), in rdm's float dtype (float32 for rdmjax RDMs).

  A square rdm must be symmetric (up to rounding, SYMMETRY_RTOL; NaN
  where its transpose is NaN); its diagonal is dropped.
  """
  r = np.asarray(rdm)
  if not np.issubdtype(r.dtype, np.floating):
    r = r.astype(np.float64)
  if r.ndim == 1:
    compare.triangle_size(r.shape[0])
    return r
  if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] < 2:
    raise InputError(
      f'RDM shape {r.shape}: pass a square [n, n] matrix (n >= 2) or its'
      ' condensed upper triangle [n(n-1)/2]'
    )
  if not _symmetric(r):
    raise InputError(
      'the square RDM is not symmetric: pass (r + r.T) / 2 if that is meant'
    )
  n = r.shape[0]
  out = np.empty(n * (n - 1) // 2, r.dtype)
  at = 0
  for i in range(n - 1):  # row by row: no n(n-1)/2 index arrays
    out[at : at + n - 1 - i] = r[i, i + 1 :]
    at += n - 1 - i
  return out


# Asymmetry allowed in a square RDM, relative to its largest entry: the
# rounding of a product computed per triangle (1 - np.corrcoef(x)).
SYMMETRY_RTOL = 1e-5


def _symmetric(r: np.ndarray) -> bool:
  """r equals r.T up to rounding, NaN where r.T is NaN; a block of rows at
  a time (bounded temporaries for a full subject's RDM)."""
  blocks = range(0, r.shape[0], 1024)
  peak = max(
    np.max(np.abs(a), initial=0.0, where=~np.isnan(a))
    for a in (r[s : s + 1024] for s in blocks)
  )
  tol = SYMMETRY_RTOL * peak
  for s in blocks:
    a, b = r[s : s + 1024], r[:, s : s + 1024].T
    if not np.array_equal(np.isnan(a), np.isnan(b)):
      return False
    with np.errstate(invalid='ignore'):
      if np.any(np.abs(a - b) > tol):
        return False
  return True


def _per_image(name: str, values, n: int) -> np.ndarray:
  v = np.asarray(values)
  if v.shape != (n,):
    raise InputError(f'{name} shape {v.shape}: pass one value per image ({n})')
  return v


def to_rsatoolbox(
  rdm,
  *,
  nsd_ids: Sequence[int] | np.ndarray | None = None,
  index: Sequence[int] | np.ndarray | None = None,
  measure: str = 'correlation',
  rdm_descriptors: Mapping[str, Any] | None = None,
  pattern_descriptors: Mapping[str, Any] | None = None,
  descriptors: Mapping[str, Any] | None = None,
):
  """One rdmjax RDM as an `rsatoolbox.rdm.RDMs` (n_rdm = 1).

  Args:
    rdm: [n, n] symmetric (e.g. `rdmjax.rsa.rdm.rdm`) or condensed
      [n(n-1)/2] in scipy `squareform` order; numpy or jax. The values are
      stored as float64 (exact for rdmjax's float32), unchanged: see the
      module docstring for how rdmjax's and rsatoolbox's euclidean differ.
    nsd_ids: [n] the images' NSD ids (e.g. `subject.nsd_ids('train')`):
      pattern descriptor 'nsd_id'.
    index: [n] the images' row index in the responses the RDM came from
      (default 0 .. n-1): pattern descriptor 'index'.
    measure: the dissimilarity label, e.g. the rdmjax metric name
      ('correlation', 'euclidean', 'sqeuclidean', 'cosine').
    rdm_descriptors: one value per key for this RDM, e.g.
      {'roi': 'V1', 'subject': 'subj01'}.
    pattern_descriptors: more per-image descriptors, name -> [n] values.
    descriptors: rsatoolbox's object-level descriptors.

  Returns:
    rsatoolbox.rdm.RDMs holding the one RDM.
  """
  rsatoolbox = _rsatoolbox()
  v = condensed(rdm)
  n = compare.triangle_size(v.shape[0])
  pats = {}
  for name, values in (pattern_descriptors or {}).items():
    pats[name] = _per_image(f'pattern descriptor {name!r}', values, n)
  pats['index'] = (
    np.arange(n) if index is None else _per_image('index', index, n)
  )
  if nsd_ids is not None:
    pats['nsd_id'] = _per_image('nsd_ids', nsd_ids, n).astype(np.int64)
  return rsatoolbox.rdm.RDMs(
    v.astype(np.float64)[None],
    dissimilarity_measure=measure,
    descriptors=dict(descriptors or {}),
    # One value each: a list of one, so that rsatoolbox does not take a
    # tuple or array value for several RDMs' values.
    rdm_descriptors={k: [x] for k, x in (rdm_descriptors or {}).items()},
    pattern_descriptors=pats,
  )


class RsaRdm(NamedTuple):
  """One RDM taken out of an `rsatoolbox.rdm.RDMs` (`from_rsatoolbox`).

  Attributes:
    matrix: [n, n] float64, symmetric with a zero diagonal; usable wherever
      rdmjax takes an RDM (`rdmjax.rsa.compare.compare_rdms`, which compares
      float32 values: exact for RDMs that came from rdmjax).
    pattern_descriptors: name -> [n] numpy array (always 'index'; 'nsd_id'
      where the RDMs carried it), in the matrix's row order.
    measure: rsatoolbox's `dissimilarity_measure` (None if unset).
    rdm_descriptors: name -> this RDM's value (rsatoolbox's 'index' too).
  """

  matrix: np.ndarray
  pattern_descriptors: dict[str, np.ndarray]
  measure: str | None
  rdm_descriptors: dict[str, Any]


def from_rsatoolbox(rdms) -> RsaRdm:
  """The one RDM of an `rsatoolbox.rdm.RDMs` as a square numpy matrix.

  Args:
    rdms: an RDMs with n_rdm == 1 (pass `rdms[i]` for one of several).

  Returns:
    `RsaRdm` (matrix, pattern_descriptors, measure, rdm_descriptors).
  """
  rsatoolbox = _rsatoolbox()
  if not isinstance(rdms, rsatoolbox.rdm.RDMs):
    raise InputError(f'{type(rdms).__name__}: pass an rsatoolbox.rdm.RDMs')
  if rdms.n_rdm != 1:
    raise InputError(
      f'the RDMs object holds {rdms.n_rdm} RDMs: pass rdms[i] for one'
    )
  v = np.asarray(rdms.dissimilarities, np.float64)[0]
  matrix = squareform(v, checks=False)  # zero diagonal, i < j row-major
  pats = {k: np.asarray(x) for k, x in rdms.pattern_descriptors.items()}
  desc = {k: x[0] for k, x in rdms.rdm_descriptors.items()}
  return RsaRdm(matrix, pats, rdms.dissimilarity_measure, desc)


class SavedRdms(NamedTuple):
  """What `load_rdms` reads back.

  Attributes:
    rdms: name -> condensed [n(n-1)/2] RDM (scipy `squareform` order), in
      the order saved and the dtype saved (float32 for rdmjax RDMs).
    metrics: name -> metric ('' where none was given).
    nsd_ids: [n] int64 NSD ids of the images, or None.
    index: [n] int64 row index of the images (default 0 .. n-1).
    descriptors: str -> str, what the caller saved along (subject, split).
  """

  rdms: dict[str, np.ndarray]
  metrics: dict[str, str]
  nsd_ids: np.ndarray | None
  index: np.ndarray
  descriptors: dict[str, str]


def save_rdms(
  path: str | os.PathLike,
  rdms: Mapping[str, Any],
  *,
  nsd_ids: Sequence[int] | np.ndarray | None = None,
  metric: str | Mapping[str, str] | None = None,
  index: Sequence[int] | np.ndarray | None = None,
  descriptors: Mapping[str, str] | None = None,
) -> os.PathLike:
  """Writes RDMs of the same n images to one .npz file, atomically.

  Each RDM is stored condensed (half the square) in its own dtype, with no
  pickled objects; the file appears complete or not at all (a temporary
  name in the same folder, then a rename), on a local disk or cloud
  storage (`rdmjax.paths`). As every run file, written by the writer
  process only (`rdmjax.report.is_writer`).

  Args:
    path: the .npz file.
    rdms: name -> [n, n] or condensed RDM, e.g. {'V1 correlation': r}.
    nsd_ids: [n] the images' NSD ids.
    metric: one metric for all, or name -> metric.
    index: [n] the images' row index (default 0 .. n-1).
    descriptors: more str -> str metadata (e.g. {'subject': 'subj01'}).

  Returns:
    The path written (an `etils.epath.Path`).
  """
  if not rdms:
    raise InputError('no RDMs to save: pass {name: rdm, ...}')
  names = [str(k) for k in rdms]
  if len(set(names)) != len(names):
    raise InputError(f'RDM names {names}: each name once')
  arrays: dict[str, np.ndarray] = {}
  n = None
  for i, (name, r) in enumerate(rdms.items()):
    v = condensed(r)
    m = compare.triangle_size(v.shape[0])
    if n not in (None, m):
      raise InputError(
        f'RDM {name!r} is over {m} images, the first over {n}: save RDMs of'
        ' the same images together'
      )
    n = m
    arrays[f'rdm_{i}'] = v
  if isinstance(metric, Mapping):
    missing = [k for k in names if k not in metric]
    if missing:
      raise InputError(f'no metric for RDMs {missing}')
    metrics = [str(metric[k]) for k in names]
  else:
    metrics = [metric or ''] * len(names)
  arrays['names'] = np.array(names, dtype=str)
  arrays['metrics'] = np.array(metrics, dtype=str)
  arrays['index'] = (
    np.arange(n, dtype=np.int64)
    if index is None
    else _per_image('index', index, n).astype(np.int64)
  )
  if nsd_ids is not None:
    arrays['nsd_ids'] = _per_image('nsd_ids', nsd_ids, n).astype(np.int64)
  desc = {str(k): str(v) for k, v in (descriptors or {}).items()}
  arrays['descriptor_keys'] = np.array(list(desc), dtype=str)
  arrays['descriptor_values'] = np.array(list(desc.values()), dtype=str)
  arrays['format'] = np.array(FORMAT)
  path = paths.path(path)
  if not files.is_writer():
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
  try:
    # Streamed to the file (no bytes copy of RDMs of hundreds of MB).
    with tmp.open('wb') as f:
      np.savez(f, **arrays)
    tmp.replace(path)
  finally:
    if tmp.exists():
      tmp.unlink()
  return path


def load_rdms(path: str | os.PathLike) -> SavedRdms:
  """Reads a `save_rdms` file (no pickles).

  Returns:
    `SavedRdms` (rdms, metrics, nsd_ids, index, descriptors).
  """
  path = paths.path(path)
  if not path.exists():
    raise InputError(f'{path}: no such RDM file (written by save_rdms)')
  with path.open('rb') as f, np.load(f, allow_pickle=False) as z:
    if 'format' not in z.files or str(z['format']) != FORMAT:
      raise InputError(f'{path}: not an RDM file written by save_rdms')
    names = [str(s) for s in z['names']]
    rdms = {name: z[f'rdm_{i}'] for i, name in enumerate(names)}
    metrics = dict(zip(names, (str(s) for s in z['metrics'])))
    nsd_ids = z['nsd_ids'] if 'nsd_ids' in z.files else None
    keys, values = z['descriptor_keys'], z['descriptor_values']
    desc = {str(k): str(v) for k, v in zip(keys, values)}
    return SavedRdms(rdms, metrics, nsd_ids, z['index'], desc)
