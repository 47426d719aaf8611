"""The embedding cache: one file format for every embedding source.

A cache is one `.npz` file holding

  embeddings: [n_images, d] f32   one row per image
  nsd_ids:    [n_images] int64    the image's 0-based NSD id
  splits:     [n_images] str      'train' or 'test' (the Algonauts split)
  meta:       0-d str             JSON: model, layer, preprocessing, subject

Rows of one split appear in the order of that split's image files (and so of
the fMRI rows). Reading checks that the ids of the requested split equal the
subject's, so an embedding of other images can never be paired with these
responses silently.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rdmjax import paths
from rdmjax.errors import InputError
from rdmjax.files import is_writer

REQUIRED_META = ('model', 'layer', 'preprocessing', 'subject')


def write(
  path: str | os.PathLike,
  embeddings: np.ndarray,
  nsd_ids: Sequence[int] | np.ndarray,
  splits: Sequence[str] | np.ndarray,
  meta: Mapping[str, Any],
  writer: bool | None = None,
) -> os.PathLike:
  """Writes an embedding cache atomically (temp file, then rename).

  Only the writer process writes (`rdmjax.report.is_writer`, or as
  `writer` says: a host writing its own local synthetic subject); the
  others check the arrays and return the path. Local or cloud storage
  (`rdmjax.paths`).

  Args:
    path: the `.npz` file to write.
    embeddings: [n_images, d] float array.
    nsd_ids: [n_images] NSD ids.
    splits: [n_images] 'train' or 'test'.
    meta: at least `model`, `layer`, `preprocessing`, `subject`.

  Returns:
    The path written.
  """
  emb = np.asarray(embeddings, np.float32)
  ids = np.asarray(nsd_ids, np.int64)
  spl = np.asarray(splits, dtype='<U5')
  if emb.ndim != 2 or ids.shape != (emb.shape[0],) or spl.shape != ids.shape:
    raise InputError(
      f'embedding cache: embeddings {emb.shape}, nsd_ids {ids.shape} and '
      f'splits {spl.shape} must be [n, d], [n], [n]'
    )
  missing = [k for k in REQUIRED_META if k not in meta]
  if missing:
    raise InputError(f'embedding cache: meta lacks {missing}')
  if not np.all(np.isfinite(emb)):
    raise InputError('embedding cache: embeddings hold NaN or Inf')

  path = paths.path(path)
  if not (is_writer() if writer is None else writer):
    return path
  buf = io.BytesIO()  # a few tens of MB even for all NSD images
  np.savez(
    buf,
    embeddings=emb,
    nsd_ids=ids,
    splits=spl,
    meta=np.asarray(json.dumps(dict(meta), sort_keys=True)),
  )
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'{path.name}.{os.getpid()}.tmp')
  tmp.write_bytes(buf.getvalue())
  tmp.replace(path)
  return path


def read(
  path: str | os.PathLike,
  split: str | None = None,
  expect_ids: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
  """Reads a cache, optionally one split, checking the image ids.

  Args:
    path: a file written by `write`.
    split: 'train', 'test' or None (all rows).
    expect_ids: the NSD ids the rows must have, in order (for example
      `subject.nsd_ids('train')`); a mismatch raises `InputError`.

  Returns:
    (embeddings [n, d] f32, meta dict with `nsd_ids` and `splits` added).
  """
  path = paths.path(path)
  if not path.is_file():
    raise InputError(
      f'embedding cache {path} not found: make it with --mode=embed (CLIP) '
      'or --mode=synth (synthetic), or point config.data.embeddings at one'
    )
  try:
    with path.open('rb') as fh, np.load(fh, allow_pickle=False) as f:
      emb, ids, spl = f['embeddings'], f['nsd_ids'], f['splits']
      meta = json.loads(str(f['meta']))
  except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    msg = ' '.join(str(e).split())[:200]
    raise InputError(
      f'embedding cache {path} is not a valid cache ({msg}); rewrite it'
    ) from None
  if (
    emb.ndim != 2
    or emb.dtype.kind not in 'fiu'
    or ids.shape != (emb.shape[0],)
    or spl.shape != ids.shape
    or not isinstance(meta, dict)
  ):
    raise InputError(
      f'embedding cache {path} is not a valid cache (embeddings {emb.shape} '
      f'{emb.dtype}, nsd_ids {ids.shape}, splits {spl.shape}, meta '
      f'{type(meta).__name__}; want [n, d] floats, [n], [n], a dict): '
      'rewrite it'
    )
  if split is not None:
    keep = spl == split
    emb, ids, spl = emb[keep], ids[keep], spl[keep]
  if expect_ids is not None:
    expect = np.asarray(expect_ids, np.int64)
    if ids.shape != expect.shape or not np.array_equal(ids, expect):
      n_bad = int(np.sum(ids != expect)) if ids.shape == expect.shape else 'all'
      raise InputError(
        f'embedding cache {path} ({meta.get("subject")}, split={split}) '
        f'holds {ids.size} images but the subject has {expect.size}; '
        f"{n_bad} ids differ: embed this subject's images again"
      )
  bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
  if bad.size:
    raise InputError(
      f'embedding cache {path} (split={split}): {bad.size} of {emb.shape[0]} '
      f'rows hold NaN or Inf (first: row {bad[0]}, NSD id {ids[bad[0]]}): '
      'embed these images again (--mode=embed) or rewrite the cache'
    )
  meta = dict(meta, nsd_ids=ids, splits=spl)
  return emb.astype(np.float32, copy=False), meta
