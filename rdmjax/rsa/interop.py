"""RDMs in and out of rdmjax: rsatoolbox objects and .npz files.

`to_rsatoolbox` wraps rdmjax RDMs of the same images (one, a list, a
[k, n, n] or condensed [k, n(n-1)/2] stack, or a dict name -> RDM; condensed
in scipy `squareform` order: the entries i < j row by row, as
`rdmjax.rsa.compare.upper_triangle`) as one `rsatoolbox.rdm.RDMs`, with
the images' row index and NSD ids as pattern descriptors and per-RDM
descriptors (the dict's names as 'name'); `from_rsatoolbox` gives them back
as a [k, n, n] numpy stack with the descriptors. NaN (a missing pair)
passes both ways; +-inf is an error. The values are passed as they are:
rdmjax's 'euclidean' is the plain L2 distance, while rsatoolbox's
`calc_rdm(..., 'euclidean')` gives the squared distance over the number of
channels (`d ** 2 / n_channels`, labelled 'squared euclidean');
'correlation' (1 - Pearson r) is the same in both. Rank measures
(Spearman, Kendall) do not see that difference.

`save_rdms` / `load_rdms`: several condensed RDMs of the same images in one
.npz (no pickles), with their names, metrics and the images' NSD ids,
written through a temporary name and a rename.

rsatoolbox is optional (`pip install rsatoolbox`): it is imported only by
the two conversion functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
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


def _pair(p: int, n: int) -> tuple[int, int]:
  """The image pair (i, j), i < j, of entry p of a condensed n-image RDM."""
  i = 0
  while p >= n - 1 - i:
    p -= n - 1 - i
    i += 1
  return i, i + 1 + p


def _finite_or_nan(r: np.ndarray, label: str) -> None:
  """InputError naming the first +-inf entry of r (square or condensed)."""
  if not np.issubdtype(r.dtype, np.floating):
    return
  bad = np.isinf(r)
  if not bad.any():
    return
  at = np.argwhere(bad)[0]
  if r.ndim == 1:
    pair = _pair(int(at[0]), compare.triangle_size(r.shape[0]))
  else:
    pair = (int(at[0]), int(at[1]))
  raise InputError(
    f'{label} holds {r[tuple(at)]} at images {pair}: pass finite'
    ' dissimilarities (NaN for a missing pair)'
  )


def _is_triangle(m: int) -> bool:
  try:
    compare.triangle_size(m)
  except InputError:
    return False
  return True


def _one(r, label: str) -> np.ndarray:
  """One RDM (square or condensed) -> condensed float64, errors naming it."""
  r = np.asarray(r)
  _finite_or_nan(r, label)
  try:
    return condensed(r).astype(np.float64)
  except InputError as e:
    raise InputError(f'{label}: {e}') from None


def _stack(rdms) -> tuple[np.ndarray, list[str] | None, bool]:
  """to_rsatoolbox's rdms (the forms of `compare.rdm_items`) -> (condensed
  [k, m] float64, the given names or None, whether rdms was one RDM)."""
  if not isinstance(rdms, (Mapping, list, tuple)) and not hasattr(
    rdms, 'get_vectors'
  ):
    r = np.asarray(rdms)
    if r.ndim == 3 and (r.shape[1] != r.shape[2] or r.shape[1] < 2):
      raise InputError(
        f'RDM stack shape {r.shape}: a 3-D stack is [k, n, n] square RDMs'
        ' (n >= 2); stack condensed ones as [k, n(n-1)/2]'
      )
    if r.ndim not in (1, 2, 3):
      raise InputError(
        f'RDM shape {r.shape}: pass one RDM ([n, n] or [n(n-1)/2]), a list,'
        ' a [k, n, n] or [k, n(n-1)/2] stack, or a dict name -> RDM'
      )
    rdms = r
  items, single, named = compare.rdm_items(rdms, 'rdms')
  if single:
    r = np.asarray(items[0][1])
    try:
      return _one(r, 'the RDM')[None], None, True
    except InputError as e:
      m = r.shape[0]  # k condensed RDMs of m = k entries would read so
      if r.ndim == 1 or not _is_triangle(m):
        raise
      raise InputError(
        f'{e} (a square 2-D array is one square RDM: pass k condensed'
        ' RDMs of length k as a list)'
      ) from None
  names = [str(k) for k, _ in items] if named else None
  if names is not None and len(set(names)) != len(names):
    raise InputError(f'RDM names {names}: each name once')
  labels = (
    [f'RDM {k!r}' for k in names]
    if names is not None
    else [f'rdms[{i}]' for i in range(len(items))]
  )
  items = [r for _, r in items]
  if not items:
    raise InputError('no RDMs: pass one RDM, a list, a stack or a dict')
  vs = [_one(r, label) for r, label in zip(items, labels)]
  sizes = [v.shape[0] for v in vs]
  for v, label in zip(vs, labels):
    if v.shape[0] != sizes[0]:
      n0 = compare.triangle_size(sizes[0])
      n = compare.triangle_size(v.shape[0])
      raise InputError(
        f'{label} is over {n} images, {labels[0]} over {n0}: put RDMs of'
        ' the same images in one RDMs object'
      )
  return np.stack(vs), names, False


def _per_rdm(
  rdm_descriptors: Mapping[str, Any] | None,
  k: int,
  names: list[str] | None,
  single: bool,
) -> dict[str, list]:
  """rdm_descriptors -> name -> a list of k values; the dict's names as
  'name'."""
  out: dict[str, list] = {}
  for key, values in (rdm_descriptors or {}).items():
    if single:  # one value for the one RDM, as it is
      out[key] = [values]
      continue
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
      raise InputError(
        f'rdm descriptor {key!r} is {values!r}: pass {k} values, one per RDM'
      )
    values = list(values)
    if len(values) != k:
      raise InputError(
        f'rdm descriptor {key!r} has {len(values)} values for {k} RDMs:'
        ' pass one per RDM'
      )
    out[key] = values
  if names is not None:
    if 'name' in out:
      raise InputError(
        "rdm descriptor 'name' given twice: by the dict's keys and in"
        ' rdm_descriptors'
      )
    out['name'] = names
  return out


def to_rsatoolbox(
  rdms,
  *,
  nsd_ids: Sequence[int] | np.ndarray | None = None,
  index: Sequence[int] | np.ndarray | None = None,
  measure: str = 'correlation',
  rdm_descriptors: Mapping[str, Any] | None = None,
  pattern_descriptors: Mapping[str, Any] | None = None,
  descriptors: Mapping[str, Any] | None = None,
):
  """rdmjax RDMs of the same n images as one `rsatoolbox.rdm.RDMs`.

  Args:
    rdms: one RDM, [n, n] symmetric (e.g. `rdmjax.rsa.rdm.rdm`) or condensed
      [n(n-1)/2] in scipy `squareform` order; or several: a list or tuple
      of them, a [k, n, n] stack, a [k, n(n-1)/2] stack of condensed RDMs,
      or a dict name -> RDM (the names become rdm descriptor 'name'). A
      2-D array that is square is one square RDM, any other 2-D array a
      stack of condensed ones. numpy or jax. The values are stored as
      float64 (exact for rdmjax's float32), unchanged (see the module
      docstring for how rdmjax's and rsatoolbox's euclidean differ); NaN
      marks a missing pair (rsatoolbox's comparisons leave it out), +-inf
      is an error.
    nsd_ids: [n] the images' NSD ids (e.g. `subject.nsd_ids('train')`):
      pattern descriptor 'nsd_id'.
    index: [n] the images' row index in the responses the RDMs came from
      (default pattern_descriptors['index'], else 0 .. n-1): pattern
      descriptor 'index'.
    measure: the dissimilarity label, e.g. the rdmjax metric name
      ('correlation', 'euclidean', 'sqeuclidean', 'cosine').
    rdm_descriptors: per-RDM descriptors. For one RDM, one value per key,
      e.g. {'roi': 'V1', 'subject': 'subj01'}; for a list, stack or dict
      (even of one), k values per key in the RDMs' order, e.g.
      {'subject': ['subj01', 'subj02']}.
    pattern_descriptors: more per-image descriptors, name -> [n] values.
    descriptors: rsatoolbox's object-level descriptors.

  Returns:
    rsatoolbox.rdm.RDMs with n_rdm = k (1 for one RDM), n_cond = n.
  """
  rsatoolbox = _rsatoolbox()
  v, names, single = _stack(rdms)
  k, n = v.shape[0], compare.triangle_size(v.shape[1])
  pats = {}
  for name, values in (pattern_descriptors or {}).items():
    pats[name] = _per_image(f'pattern descriptor {name!r}', values, n)
  for name, arg, values in (
    ('index', 'index', index),
    ('nsd_id', 'nsd_ids', nsd_ids),
  ):
    if values is not None and name in pats:
      raise InputError(
        f'pattern descriptor {name!r} given twice: by {arg}= and in'
        ' pattern_descriptors'
      )
  if index is not None:
    pats['index'] = _per_image('index', index, n)
  pats.setdefault('index', np.arange(n))
  if nsd_ids is not None:
    pats['nsd_id'] = _per_image('nsd_ids', nsd_ids, n).astype(np.int64)
  return rsatoolbox.rdm.RDMs(
    v,
    dissimilarity_measure=measure,
    descriptors=dict(descriptors or {}),
    # Lists of k values: rsatoolbox takes a tuple or array value of one RDM
    # for several RDMs' values.
    rdm_descriptors=_per_rdm(rdm_descriptors, k, names, single),
    pattern_descriptors=pats,
  )


class RsaRdm(NamedTuple):
  """The RDMs taken out of an `rsatoolbox.rdm.RDMs` (`from_rsatoolbox`).

  Attributes:
    matrices: [k, n, n] float64, each symmetric with a zero diagonal, NaN
      where rsatoolbox's RDM had NaN (a missing pair); each usable wherever
      rdmjax takes an RDM (`rdmjax.rsa.compare.compare_rdms`, which compares
      float32 values: exact for RDMs that came from rdmjax).
    pattern_descriptors: name -> [n] numpy array (always 'index'; 'nsd_id'
      where the RDMs carried it), in the matrices' row order.
    measure: rsatoolbox's `dissimilarity_measure` (None if unset).
    per_rdm: name -> list of k values, one per RDM: rsatoolbox's
      rdm_descriptors ('index' always, 'name' where set).
    names: per_rdm['name'] as str, or None where the RDMs have no names.
    descriptors: rsatoolbox's object-level descriptors.

  For one RDM (k = 1), `matrix` ([n, n]) and `rdm_descriptors` (name ->
  its value) give it alone.
  """

  matrices: np.ndarray
  pattern_descriptors: dict[str, np.ndarray]
  measure: str | None
  per_rdm: dict[str, list]
  names: list[str] | None
  descriptors: dict[str, Any]

  @property
  def n_rdm(self) -> int:
    return self.matrices.shape[0]

  def _only(self, what: str) -> None:
    if self.n_rdm != 1:
      raise InputError(
        f'{what} is for one RDM and this holds {self.n_rdm}: use'
        ' .matrices[i] and .per_rdm (or from_rsatoolbox(rdms[i]))'
      )

  @property
  def matrix(self) -> np.ndarray:
    """[n, n]: the one RDM (k = 1)."""
    self._only('.matrix')
    return self.matrices[0]

  @property
  def rdm_descriptors(self) -> dict[str, Any]:
    """name -> the one RDM's value (k = 1; rsatoolbox's 'index' too)."""
    self._only('.rdm_descriptors')
    return {k: x[0] for k, x in self.per_rdm.items()}


def from_rsatoolbox(rdms) -> RsaRdm:
  """The RDMs of an `rsatoolbox.rdm.RDMs` as square numpy matrices.

  Args:
    rdms: an RDMs with n_rdm = k >= 1 (k square matrices of k n^2 float64:
      1.6 GB for 2 RDMs of 10000 images; pass `rdms[i]` or
      `rdms.subset(...)` for fewer).

  Returns:
    `RsaRdm` (matrices [k, n, n], pattern_descriptors, measure, per_rdm,
    names, descriptors; `matrix` and `rdm_descriptors` for k = 1).
  """
  rsatoolbox = _rsatoolbox()
  if not isinstance(rdms, rsatoolbox.rdm.RDMs):
    raise InputError(f'{type(rdms).__name__}: pass an rsatoolbox.rdm.RDMs')
  if rdms.n_rdm < 1:
    raise InputError('the RDMs object holds no RDMs')
  v = np.asarray(rdms.dissimilarities, np.float64).reshape(rdms.n_rdm, -1)
  per_rdm = {k: list(x) for k, x in rdms.rdm_descriptors.items()}
  names = [str(x) for x in per_rdm['name']] if 'name' in per_rdm else None
  for i in range(v.shape[0]):
    label = f'RDM {names[i]!r}' if names else f'rdms[{i}]'
    _finite_or_nan(v[i], label)
  n = compare.triangle_size(v.shape[1])
  matrices = np.empty((v.shape[0], n, n))
  for i in range(v.shape[0]):  # zero diagonal, i < j row-major
    matrices[i] = squareform(v[i], checks=False)
  pats = {k: np.asarray(x) for k, x in rdms.pattern_descriptors.items()}
  return RsaRdm(
    matrices,
    pats,
    rdms.dissimilarity_measure,
    per_rdm,
    names,
    dict(rdms.descriptors),
  )


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
