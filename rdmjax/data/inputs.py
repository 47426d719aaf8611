"""What a stage reads for one subject, resolved once from (config, workdir).

The responses of an ROI (standardised), the embedding caches available,
the synthetic subject's noiseless responses, image labels and repeat
counts: each comes back as arrays, so that `rdmjax.rsa` sees no config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import logging

from rdmjax import data, paths
from rdmjax.data import algonauts, synthetic
from rdmjax.data import embeddings as embeddings_lib
from rdmjax.errors import InputError
from rdmjax.rsa import repeats


def responses(
  subject, roi: str, split: str, standardize: bool, rows=None
) -> np.ndarray:
  """[n_images, n_roi_vertices] f32, z-scored per vertex over the split's
  images (or its images `rows`)."""
  x = subject.responses(roi, split, rows)  # fresh: standardised in place
  return algonauts.Standardizer.fit(x)(x, out=x) if standardize else x


def embedding_sources(config, workdir: Path) -> dict[str, Path]:
  """Every embedding cache available: synthetic, WORKDIR/embeddings/*.npz."""
  found = {}
  if not config.data.root:
    cfg = config.copy_and_resolve_references()
    cfg.data.embeddings = 'synthetic'
    found['synthetic'] = data.embeddings_path(cfg, workdir)
  caches = sorted((workdir / 'embeddings').glob('*.npz'))
  found |= {p.stem: p for p in caches if not p.name.endswith('.tmp.npz')}
  if config.data.embeddings not in ('synthetic', 'clip'):
    p = data.embeddings_path(config, workdir)
    found.setdefault(p.stem, p)
  unique, seen = {}, set()
  for name, p in found.items():
    if p.is_file() and p.resolve() not in seen:
      seen.add(p.resolve())
      unique[name] = p
  return unique


def read_embeddings(sources, split, ids) -> tuple[dict, dict]:
  embs, info = {}, {}
  for name, path in sources.items():
    try:
      emb, meta = embeddings_lib.read(path, split=split, expect_ids=ids)
    except InputError as e:  # a stale cache must not stop the analysis
      logging.warning('embedding source %s skipped: %s', name, e)
      info[name] = {'path': path, 'error': str(e)}
      continue
    embs[name] = emb
    info[name] = {
      'path': path,
      'dim': emb.shape[1],
      **{k: meta.get(k) for k in ('model', 'layer', 'preprocessing')},
    }
  return embs, info


def noiseless(
  config, workdir: Path, subject, roi: str, split: str, std: bool, rows=None
):
  """The synthetic subject's noiseless responses of an ROI (its images
  `rows`, default all), or None."""
  if config.data.root:
    return None
  root = data.data_root(config, workdir)
  x = synthetic.noiseless(root, subject, roi, split)
  if x is not None and rows is not None:
    x = x[rows]
  if x is None:
    logging.warning('no noiseless responses for %s: no RSA ceiling', roi)
  elif std:
    x = algonauts.Standardizer.fit(x)(x, out=x)  # a fresh array: in place
  return x


def image_labels(
  config, workdir: Path, subject, split: str, rows=None
) -> list[str] | None:
  """A label per image of the split (its `rows`), or None: read from the
  file `rdm.labels` if set (`read_labels`; {subject} and {split} in its
  path are replaced), else the synthetic subject's category (the is_*
  latent set); real subjects without the file have none."""
  f = str(config.rdm.get('labels', '') or '')
  if f:
    f = f.replace('{subject}', subject.name).replace('{split}', split)
    n = subject.n_images(split)
    labels = read_labels(f, n, f'{split} images of {subject.name}')
    return labels if rows is None else [labels[r] for r in rows]
  if config.data.root:
    return None
  try:
    ex = synthetic.read_extras(data.data_root(config, workdir), subject.name)
  except OSError:
    return None
  lat, names = ex.get(f'latents_{split}'), list(ex.get('latent_names', []))
  cols = [k for k, n in enumerate(names) if str(n).startswith('is_')]
  if lat is None or not cols:
    return None
  cat = np.asarray(lat)[:, cols].argmax(1)
  labels = [str(names[cols[k]])[3:] for k in cat]
  return labels if rows is None else [labels[r] for r in rows]


def read_labels(path, n: int, what: str = 'images') -> list[str]:
  """The label of each of n images from a file, in image order (as
  strings): .npy, a 1-D array of strings or integers; any other suffix
  (.txt, .csv), text with one label per line (no header; the whole line,
  stripped, is the label).

  Raises:
    InputError: no such file, an unreadable array, an empty line, or not
      exactly n labels.
  """
  p = paths.path(path)
  where = f'rdm.labels={path}'
  if not p.is_file():
    raise InputError(f'{where}: no such file')
  if p.suffix == '.npy':
    try:
      with p.open('rb') as fh:
        a = np.load(fh, allow_pickle=False)
    except ValueError as e:
      raise InputError(
        f'{where}: {e}; save a 1-D array of strings or integers'
      ) from None
    if a.ndim != 1:
      raise InputError(f'{where}: shape {a.shape}, not one label per image')
    labels = [
      v.decode() if isinstance(v, bytes) else str(v) for v in a.tolist()
    ]
  else:
    labels = [line.strip() for line in p.read_text().splitlines()]
    while labels and not labels[-1]:  # trailing blank lines
      labels.pop()
    empty = [k + 1 for k, v in enumerate(labels) if not v]
    if empty:
      raise InputError(f'{where}: line {empty[0]} is empty')
  if len(labels) != n:
    raise InputError(
      f'{where}: {len(labels)} labels for the {n} {what}: one per image, in '
      'image order'
    )
  return labels


def repeat_counts(config, subject, workdir) -> np.ndarray | None:
  """The training images' repeat counts, or None where unknown."""
  src = str(config.data.get('repeats', ''))
  ids = subject.nsd_ids('train')
  if src.endswith('.mat'):
    return repeats.from_expdesign(Path(src).expanduser(), subject.name, ids)
  if src:
    c = np.load(Path(src).expanduser())
  elif (subject.paths.train / repeats.FILE).is_file():
    c = np.load(subject.paths.train / repeats.FILE)
  elif not config.data.root:
    root = data.data_root(config, workdir)
    c = synthetic.read_extras(root, subject.name)['n_reps_train']
  else:
    return None
  c = np.asarray(c).astype(np.int64).ravel()
  if c.shape != ids.shape or (c < 1).any():
    raise InputError(
      f'repeat counts: {c.shape} values (min {c.min()}) for {ids.size} '
      'training images: pass one count >= 1 per training image, in fMRI '
      'row order'
    )
  return c
