"""The data layer: Algonauts 2023 reader, synthetic subject, embedding cache.

`subject_from_config` is what every stage calls: with `config.data.root`
empty it writes (once, cached under WORKDIR/data) the synthetic default
subject and reads it back through the same reader as the real data. With
a workdir on cloud storage (gs://...) the subject, which is read by memory
mapping, goes to each host's local cache instead (`rdmjax.paths`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import jax
from jax.experimental import multihost_utils

from rdmjax import files, paths
from rdmjax.data import algonauts, synthetic, synthetic_population
from rdmjax.errors import InputError
from rdmjax.files import is_writer

# In a group run's subject folder: the path of the group's synthetic data
# (run state, kept in the workdir rather than in the user's config).
SHARED_ROOT = 'shared_data_root.txt'


def data_root(config, workdir: str | os.PathLike) -> Path:
  """The folder holding subjNN/: config.data.root, or the synthetic cache
  (WORKDIR/data; a group run's copy for its subjects' folders; this host's
  cache when the workdir is remote)."""
  if config.data.root:
    return Path(config.data.root).expanduser()
  if paths.is_remote(workdir):
    return Path(paths.local_cache('data'))
  shared = Path(workdir) / SHARED_ROOT
  if shared.is_file():
    return Path(shared.read_text().strip())
  return Path(workdir) / 'data'


def subject_run(config, workdir, name: str):
  """(config, workdir) of subject `name`'s run inside a group run on
  `workdir`: data.subject set, and a folder WORKDIR/NAME that reads the
  group's synthetic data (`SHARED_ROOT`)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.data.subject = name
  sub = paths.path(workdir) / name
  if not config.data.root and not paths.is_remote(workdir) and is_writer():
    sub.mkdir(parents=True, exist_ok=True)
    files.atomic_write(sub / SHARED_ROOT, f'{data_root(config, workdir)}\n')
  return c, sub


@contextlib.contextmanager
def host_lock(root: Path):
  """Processes of one host take turns (a file lock) on root."""
  root.mkdir(parents=True, exist_ok=True)
  with open(root / '.lock', 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def population(config) -> bool:
  """True when the run is over several subjects (`data.subjects`)."""
  return bool(config.data.get('subjects', ''))


def subjects(config) -> list[str]:
  """The subjects of a group run: `data.subjects` 'all' (the population's,
  or subj01 ... subj08 on real data) or a comma-separated list."""
  want = str(config.data.get('subjects', ''))
  if want == 'all':
    n = 8 if config.data.root else int(config.data.population.n_subjects)
    return list(synthetic.SUBJECTS[:n])
  names = [s.strip() for s in want.split(',') if s.strip()]
  bad = [s for s in names if s not in synthetic.SUBJECTS]
  if bad or not names:
    raise InputError(
      f'data.subjects={want!r}: use all or names such as subj01,subj02'
    )
  return names


def ensure_synthetic(config, workdir) -> None:
  """Writes the synthetic subject, or the population of a group run."""
  root = data_root(config, workdir)
  if population(config):
    synthetic_population.ensure_population(root, **dict(config.data.population))
  else:
    synthetic.ensure_subject(
      root, config.data.subject, **dict(config.data.synthetic)
    )


def subject_from_config(config, workdir: str | os.PathLike):
  """Opens the configured subject, writing the synthetic default if needed.

  Returns:
    An `rdmjax.data.algonauts.Subject`.
  """
  root = data_root(config, workdir)
  if not config.data.root:
    if paths.is_remote(workdir):
      # No shared disk: every host writes (or finds) its own local copy.
      with host_lock(root):
        ensure_synthetic(config, workdir)
    elif is_writer():
      ensure_synthetic(config, workdir)
    if jax.process_count() > 1:  # the others read what process 0 wrote
      multihost_utils.sync_global_devices('rdmjax synthetic subject')
  # Memory-mapped: stages read an ROI's columns a chunk of rows at a time
  # instead of holding both hemispheres (1.5 GB for a full subject).
  return algonauts.load_subject(root, config.data.subject, mmap=True)


def embeddings_path(config, workdir: str | os.PathLike) -> Path:
  """Resolves config.data.embeddings to a cache file."""
  src = config.data.embeddings
  if src == 'synthetic':
    if config.data.root:
      raise InputError(
        'data.embeddings=synthetic needs the synthetic subject (data.root '
        "''); for real data run --mode=embed and set "
        '--config.data.embeddings=clip'
      )

    return (
      synthetic.extras_dir(data_root(config, workdir), config.data.subject)
      / 'embeddings.npz'
    )
  if src == 'clip':
    return paths.path(workdir) / 'embeddings' / 'clip.npz'
  return paths.path(src)
