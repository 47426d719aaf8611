"""Reads and validates one subject of the Algonauts 2023 challenge data.

The layout (see the reference `algonauts2023-layout.md`) is

  ROOT/subjNN/training_split/training_fmri/{lh,rh}_training_fmri.npy
  ROOT/subjNN/training_split/training_images/train-XXXX_nsd-YYYYY.png
  ROOT/subjNN/test_split/test_images/test-XXXX_nsd-YYYYY.png
  ROOT/subjNN/test_split/test_fmri/{lh,rh}_test_fmri.npy        (optional)
  ROOT/subjNN/test_split/noise_ceiling/{lh,rh}_noise_ceiling.npy (optional)
  ROOT/subjNN/roi_masks/*.npy                                   (32 files)

or the post-challenge variant with `ROOT/train_data/subjNN/{training_split,
roi_masks}` and `ROOT/test_data/subjNN/test_split/...`. fMRI rows follow the
sorted image file names; columns are challenge-space vertices, left
hemisphere first wherever both are joined.

ROI names: any label (`V1v`, `FFA-1`), a union shorthand (`V1` = V1v + V1d,
`FFA` = FFA-1 + FFA-2, `VWFA` = VWFA-1 + VWFA-2, `FBA`, `V2`, `V3`), a class
(`floc-faces`, `prf-visualrois`, ...: every labelled vertex of the class), or
`all` (every column).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdmjax.data.checked_io import (
  _load_mapping,
  _load_npy,
  _npy_header,
  _release,
)
from rdmjax.errors import InputError
from rdmjax.sharding import aligned_empty

HEMIS = ('lh', 'rh')
CLASSES = (
  'prf-visualrois',
  'floc-bodies',
  'floc-faces',
  'floc-places',
  'floc-words',
  'streams',
)
# Combined names users ask for that are not labels themselves.
UNIONS = {
  'V1': ('V1v', 'V1d'),
  'V2': ('V2v', 'V2d'),
  'V3': ('V3v', 'V3d'),
  'FBA': ('FBA-1', 'FBA-2'),
  'FFA': ('FFA-1', 'FFA-2'),
  'VWFA': ('VWFA-1', 'VWFA-2'),
  'early-visual': ('V1v', 'V1d', 'V2v', 'V2d', 'V3v', 'V3d'),
}
IMAGE_RE = {
  'train': re.compile(r'^train-(\d{4})_nsd-(\d{5})\.png$'),
  'test': re.compile(r'^test-(\d{4})_nsd-(\d{5})\.png$'),
}


@dataclasses.dataclass(frozen=True)
class SubjectPaths:
  """Where one subject's files are (flat or train_data/test_data layout)."""

  name: str
  train: Path  # .../subjNN/training_split
  test: Path  # .../subjNN/test_split
  roi: Path  # .../subjNN/roi_masks

  @classmethod
  def find(cls, root: str | os.PathLike, subject: str) -> SubjectPaths:
    root = Path(root)
    if not re.fullmatch(r'subj0[1-8]', subject):
      raise InputError(
        f'subject {subject!r} is not subj01 ... subj08: set '
        '--config.data.subject=subj01'
      )
    flat = root / subject
    if (flat / 'training_split').is_dir():
      return cls(
        subject,
        flat / 'training_split',
        flat / 'test_split',
        flat / 'roi_masks',
      )
    split = root / 'train_data' / subject
    if (split / 'training_split').is_dir():
      return cls(
        subject,
        split / 'training_split',
        root / 'test_data' / subject / 'test_split',
        split / 'roi_masks',
      )
    found = sorted(p.name for p in root.glob('subj*')) if root.is_dir() else []
    raise InputError(
      f'subject {subject} not found under {root} (looked for {flat}/'
      f'training_split and {split}/training_split; found {found or "nothing"}):'
      ' point --config.data.root at the folder that holds subj01 ... subj08'
    )


ROW_CHUNK = 512  # rows read at a time from memory-mapped fMRI


def _column_major(a: np.ndarray) -> bool:
  return a.ndim == 2 and a.flags.f_contiguous and not a.flags.c_contiguous


def _as_float32(a: np.ndarray) -> np.ndarray:
  """a as float32, in a's memory order, converted ROW_CHUNK rows (columns of
  a Fortran-ordered array) at a time: a memory-mapped float64 source never
  has more than a chunk resident."""
  f = _column_major(a)
  out = np.empty(a.shape, np.float32, order='F' if f else 'C')
  src, dst = (a.T, out.T) if f else (a, out)
  for s in range(0, src.shape[0], ROW_CHUNK):
    dst[s : s + ROW_CHUNK] = src[s : s + ROW_CHUNK]
    _release(a)
  return out


def _load_fmri(path: Path, mmap: bool) -> np.ndarray:
  """[n, v] f32 responses. float64 and integer files are converted to
  float32 (in memory, a chunk at a time); float32 files stay memory-mapped
  where mmap. Fortran-ordered files read the same values as C-ordered ones.
  """
  shape, _, dtype, _ = _npy_header(path)
  if len(shape) != 2:
    raise InputError(
      f'{path}: fMRI has shape {shape}, not 2-D [images, vertices]: replace '
      'it with the file from the Algonauts 2023 download'
    )
  if dtype.hasobject or dtype.names is not None or dtype.kind not in 'iuf':
    raise InputError(
      f'{path}: fMRI has dtype {dtype}, not a number type: save it as '
      'float32 (np.save(f, x.astype(np.float32)))'
    )
  native32 = dtype == np.float32 and dtype.isnative
  a = _load_npy(path, mmap=mmap or not native32)
  return a if native32 else _as_float32(a)


def read_columns(parts, masks, rows=None) -> np.ndarray:
  """[n, sum of masks] f32 aligned: the masked columns of each [n, v_k] part
  side by side (LH then RH), read ROW_CHUNK rows at a time so that a
  memory-mapped part never has more than a chunk resident."""
  idx = np.arange(parts[0].shape[0]) if rows is None else np.asarray(rows)
  width = [int(m.sum()) for m in masks]
  out = aligned_empty((idx.size, sum(width)))
  for s in range(0, idx.size, ROW_CHUNK):
    r = idx[s : s + ROW_CHUNK]
    c = 0
    for a, m, w in zip(parts, masks, width):
      block = a[r[0] : r[-1] + 1] if _contiguous(r) else a[r]
      out[s : s + len(r), c : c + w] = block[:, m]
      c += w
      _release(a)
  return out


def _contiguous(r: np.ndarray) -> bool:
  return r.size > 0 and r[-1] - r[0] + 1 == r.size


def _image_list(folder: Path, split: str) -> tuple[list[Path], np.ndarray]:
  """The split's image files in fMRI row order, and their NSD ids.

  The files must be named {split}-0001_nsd-YYYYY.png, {split}-0002_..., with
  positions 1, 2, ... n without a gap or repeat (the sorted names are the
  fMRI rows), and no NSD id twice.
  """
  if not folder.is_dir():
    raise InputError(f'missing folder {folder}: the subject is incomplete')
  names = sorted(p.name for p in folder.iterdir() if p.suffix == '.png')
  if not names:
    raise InputError(
      f'no {split} images ({split}-XXXX_nsd-YYYYY.png) in {folder}: unzip the '
      'subject again from the Algonauts 2023 download'
    )
  ids, first = [], {}
  for pos, name in enumerate(names, start=1):
    m = IMAGE_RE[split].match(name)
    if not m:
      raise InputError(
        f'image {folder / name} breaks the naming pattern '
        f'{split}-XXXX_nsd-YYYYY.png: rename or remove it'
      )
    if int(m.group(1)) != pos:
      raise InputError(
        f'image {folder / name} is at position {pos} of the sorted list but '
        f'its name says {int(m.group(1))}: an image is missing or duplicated '
        f'(the names must number {split}-0001 ... {split}-{len(names):04d} '
        'without gaps); restore the folder from the Algonauts 2023 download'
      )
    nsd = int(m.group(2))
    if nsd in first:
      raise InputError(
        f'images {folder / first[nsd]} and {name} both name NSD id {nsd}: an '
        'image is duplicated; restore the folder from the Algonauts 2023 '
        'download'
      )
    first[nsd] = name
    ids.append(nsd)
  return [folder / n for n in names], np.asarray(ids, np.int64)


def _check_fmri(
  lh: np.ndarray, rh: np.ndarray, n_images: int, where: Path
) -> None:
  for hemi, a in zip(HEMIS, (lh, rh)):
    if a.ndim != 2:
      raise InputError(f'{where}: {hemi} fMRI has shape {a.shape}, not 2-D')
    if a.shape[0] != n_images:
      raise InputError(
        f'{where}: {hemi} fMRI has {a.shape[0]} rows but there are '
        f'{n_images} images: the fMRI and image folders do not belong together'
      )
  if lh.shape[0] != rh.shape[0]:
    raise InputError(
      f'{where}: lh fMRI has {lh.shape[0]} rows, rh {rh.shape[0]}'
    )
  for hemi, a in zip(HEMIS, (lh, rh)):
    n_bad, first = 0, None
    # Chunks along the file's outer axis (columns of a Fortran-ordered
    # array): each chunk is a contiguous stretch of the file.
    f = _column_major(a)
    src = a.T if f else a
    for s in range(0, src.shape[0], ROW_CHUNK):  # bounded temporaries
      bad = ~np.isfinite(src[s : s + ROW_CHUNK])
      if bad.any():
        n_bad += int(bad.sum())
        if first is None:
          r, c = np.argwhere(bad)[0]
          first = (c, s + r) if f else (s + r, c)
      _release(a)  # a memory map keeps no more than a chunk resident
    if n_bad:
      raise InputError(
        f'{where}: {hemi} fMRI holds {n_bad} NaN/Inf values (first at image '
        f'row {first[0]}, vertex {first[1]}): drop those vertices or images '
        'first'
      )


@dataclasses.dataclass(frozen=True, eq=False)
class Subject:
  """One subject: fMRI of both hemispheres, images, ROI labels.

  Attributes:
    paths: where the files are.
    fmri: split -> (lh [n, v_lh] f32, rh [n, v_rh] f32); 'test' only where
      test_fmri/ exists.
    images: split -> image file paths, in fMRI row order.
    ids: split -> [n] int64 NSD ids.
    labels: (hemi, class) -> [v_hemi] int64 challenge-space label codes.
    mappings: class -> {code: ROI name}.
    noise_ceiling: (lh [v_lh], rh [v_rh]) f64, or None.
  """

  paths: SubjectPaths
  fmri: dict[str, tuple[np.ndarray, np.ndarray]]
  images: dict[str, list[Path]]
  ids: dict[str, np.ndarray]
  labels: dict[tuple[str, str], np.ndarray]
  mappings: dict[str, dict[int, str]]
  noise_ceiling: tuple[np.ndarray, np.ndarray] | None

  @property
  def name(self) -> str:
    return self.paths.name

  @property
  def n_vertices(self) -> dict[str, int]:
    lh, rh = self.fmri['train']
    return {'lh': lh.shape[1], 'rh': rh.shape[1]}

  def n_images(self, split: str = 'train') -> int:
    return len(self.images[split])

  def nsd_ids(self, split: str = 'train') -> np.ndarray:
    return self.ids[split]

  def image_paths(self, split: str = 'train') -> list[Path]:
    return self.images[split]

  def has_fmri(self, split: str) -> bool:
    return split in self.fmri

  def roi_names(self) -> list[str]:
    names = [n for m in self.mappings.values() for k, n in m.items() if k]
    return names + list(UNIONS) + list(CLASSES) + ['all']

  def roi_mask(self, roi: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns boolean vertex masks (lh [v_lh], rh [v_rh]) for a ROI name."""
    if roi == 'all':
      return tuple(np.ones(self.n_vertices[h], bool) for h in HEMIS)
    if roi in CLASSES:
      return tuple(self.labels[h, roi] != 0 for h in HEMIS)
    parts = UNIONS.get(roi, (roi,))
    masks = [np.zeros(self.n_vertices[h], bool) for h in HEMIS]
    for part in parts:
      hit = [
        (c, k)
        for c, m in self.mappings.items()
        for k, n in m.items()
        if n == part and k != 0
      ]
      if not hit:
        close = difflib.get_close_matches(roi, self.roi_names(), n=4)
        raise InputError(
          f'unknown ROI {roi!r}; close matches: {close or "none"} '
          '(names: a label such as V1v or FFA-1, a union such as V1 or FFA, '
          'a class such as floc-faces, or all)'
        )
      cls, code = hit[0]
      for mask, h in zip(masks, HEMIS):
        mask |= self.labels[h, cls] == code
    if not any(m.any() for m in masks):
      raise InputError(
        f'ROI {roi!r} has no vertex in {self.name} (either hemisphere): '
        'choose another ROI'
      )
    return masks[0], masks[1]

  def vertex_counts(self, roi: str) -> dict[str, int]:
    lh, rh = self.roi_mask(roi)
    return {'lh': int(lh.sum()), 'rh': int(rh.sum())}

  def responses(
    self, roi: str = 'all', split: str = 'train', rows=None
  ) -> np.ndarray:
    """Returns [n_images, n_roi_vertices] f32 responses, LH columns first.

    rows: image indices to read (default all), without reading the rest.
    """
    if split not in self.fmri:
      raise InputError(
        f'{self.name} has no {split} fMRI (the challenge download withheld '
        'test fMRI): use split=train, or the post-challenge release with '
        'test_split/test_fmri'
      )
    return read_columns(self.fmri[split], self.roi_mask(roi), rows)


def _load_rois(paths: SubjectPaths, n_vertices: dict[str, int]):
  mappings, labels = {}, {}
  for cls in CLASSES:
    mappings[cls] = _load_mapping(paths.roi / f'mapping_{cls}.npy')
    for h in HEMIS:
      f = paths.roi / f'{h}.{cls}_challenge_space.npy'
      lab = _load_npy(f)
      if lab.shape != (n_vertices[h],):
        raise InputError(
          f'{f}: mask has shape {lab.shape} but {h} fMRI has '
          f'{n_vertices[h]} vertices: the masks belong to another subject'
        )
      if lab.dtype.kind == 'f' and not np.array_equal(lab, np.round(lab)):
        raise InputError(
          f'{f}: mask holds fractional values, not integer label codes: '
          'replace it with the file from the Algonauts 2023 download'
        )
      labels[h, cls] = lab.astype(np.int64, copy=False)
  return mappings, labels


def load_subject(
  root: str | os.PathLike, subject: str = 'subj01', *, mmap: bool = False
) -> Subject:
  """Reads and validates one subject.

  Args:
    root: the folder that holds subj01 ... subj08 (or train_data/test_data).
    subject: 'subj01' ... 'subj08'.
    mmap: memory-map the fMRI arrays (the NaN check still reads them once).
      Only float32 files stay memory-mapped: float64 or integer fMRI is
      converted to float32 in memory (a chunk at a time while reading).

  Raises:
    InputError: a missing, truncated or damaged file, fMRI that is not
      [images, vertices] numbers, fMRI rows that disagree with the images,
      NaN/Inf, image names that break the pattern, skip or repeat a position
      or repeat an NSD id, ROI masks of the wrong length, or a mapping file
      that is not a plain pickled {int: str} dict (it is read with a
      restricted unpickler and never runs code).

  Returns:
    A validated `Subject`.
  """
  paths = SubjectPaths.find(root, subject)
  images, ids, fmri = {}, {}, {}
  images['train'], ids['train'] = _image_list(
    paths.train / 'training_images', 'train'
  )
  test_dir = paths.test / 'test_images'
  if test_dir.is_dir():
    images['test'], ids['test'] = _image_list(test_dir, 'test')
  else:
    images['test'], ids['test'] = [], np.zeros((0,), np.int64)

  def load_pair(folder: Path, stem: str):
    return tuple(_load_fmri(folder / f'{h}_{stem}.npy', mmap) for h in HEMIS)

  fmri['train'] = load_pair(paths.train / 'training_fmri', 'training_fmri')
  _check_fmri(*fmri['train'], len(images['train']), paths.train)
  if (paths.test / 'test_fmri').is_dir():
    fmri['test'] = load_pair(paths.test / 'test_fmri', 'test_fmri')
    _check_fmri(*fmri['test'], len(images['test']), paths.test)
  n_vertices = {h: a.shape[1] for h, a in zip(HEMIS, fmri['train'])}
  for split in fmri:
    for h, a in zip(HEMIS, fmri[split]):
      if a.shape[1] != n_vertices[h]:
        raise InputError(
          f'{subject}: {split} {h} fMRI has {a.shape[1]} vertices, training '
          f'has {n_vertices[h]}'
        )
  mappings, labels = _load_rois(paths, n_vertices)
  ceiling = None
  if (paths.test / 'noise_ceiling').is_dir():
    ceiling = tuple(
      _load_npy(paths.test / 'noise_ceiling' / f'{h}_noise_ceiling.npy')
      for h in HEMIS
    )
  return Subject(paths, fmri, images, ids, labels, mappings, ceiling)


@dataclasses.dataclass(frozen=True)
class Standardizer:
  """Per-vertex z-scoring, as sklearn's StandardScaler (population std)."""

  mean: np.ndarray  # [v] f64
  scale: np.ndarray  # [v] f64; 1 where a vertex is constant (as sklearn)

  @classmethod
  def fit(cls, x: np.ndarray, rows: Sequence[int] | None = None):
    """Fits on x[rows] (the training images only), in float64.

    Column block by column block: float64 copies of one block at a time,
    not of the whole [n, v] array (9841 x 39548 at NSD size).
    """
    n = x.shape[0] if rows is None else len(rows)
    if n < 2:
      raise InputError('standardisation needs at least 2 training images')
    sel = slice(None) if rows is None else np.asarray(rows)
    mean, var = np.empty(x.shape[1]), np.empty(x.shape[1])
    for s in _blocks(x.shape[1]):
      fit = np.asarray(x[sel, s], np.float64)
      mean[s] = fit.mean(0)
      var[s] = fit.var(0)
    # sklearn treats variances below ~eps * mean^2 as zero: keep the scale 1.
    eps = 10 * np.finfo(np.float64).eps
    tiny = var <= eps * np.maximum(mean**2, 1.0)
    scale = np.where(tiny, 1.0, np.sqrt(var))
    return cls(mean, scale)

  @classmethod
  def fit_chunks(cls, read, rows: Sequence[int], chunk: int = ROW_CHUNK):
    """As `fit` on the rows `read(rows)` returns ([len(rows), v] f32), a
    chunk of rows at a time (two passes: the mean, then the variance):
    never the whole array in memory."""
    rows = np.asarray(rows)
    if rows.size < 2:
      raise InputError('standardisation needs at least 2 training images')
    parts = [rows[s : s + chunk] for s in range(0, rows.size, chunk)]
    total = None
    for p in parts:
      s = read(p).sum(0, dtype=np.float64)
      total = s if total is None else total + s
    mean = total / rows.size
    ss = np.zeros_like(mean)
    for p in parts:
      ss += np.square(read(p) - mean).sum(0)
    var = ss / rows.size
    eps = 10 * np.finfo(np.float64).eps
    tiny = var <= eps * np.maximum(mean**2, 1.0)
    return cls(mean, np.where(tiny, 1.0, np.sqrt(var)))

  def __call__(self, x: np.ndarray, out: np.ndarray | None = None):
    """[n, v] f32 (computed in float64 a column block at a time).

    out: where to write it ([n, v] f32; x itself standardises in place).
    """
    if out is None:
      out = np.empty(x.shape, np.float32)
    for s in _blocks(x.shape[1]):
      b = np.asarray(x[:, s], np.float64)
      b -= self.mean[s]
      b /= self.scale[s]
      out[:, s] = b
    return out


def _blocks(v: int, width: int = 2048) -> list[slice]:
  return [slice(s, min(s + width, v)) for s in range(0, v, width)]


def standardize(x: np.ndarray, fit_rows: Sequence[int] | None = None):
  """Z-scores x per column with statistics of x[fit_rows]: [n, v] f32."""
  return Standardizer.fit(x, fit_rows)(x)
