"""Run folders on a local disk or on cloud storage, through etils epath.

A run's outputs (results, report, figures, metrics, timings, checkpoints,
embedding caches) go through `epath.Path`, the path layer Orbax uses, so
`--workdir=gs://bucket/run` works wherever the machine can write to the
bucket (`pip install gcsfs` or TensorFlow's GCS support, as epath needs).
What is read by memory mapping (a subject's responses) must be on a local
or mounted disk: with a remote workdir the synthetic subject is written to
each host's local cache (`local_cache`) instead of WORKDIR/data.
"""

from __future__ import annotations

import os

from etils import epath

REMOTE_SCHEMES = ('gs://', 's3://', 'az://', 'hf://')


def is_remote(p: str | os.PathLike) -> bool:
  """True for a cloud storage URI (gs://, s3://, az://, hf://)."""
  return os.fspath(p).startswith(REMOTE_SCHEMES)


def path(p: str | os.PathLike) -> epath.Path:
  """p as an epath.Path: local paths expanded and made absolute."""
  if is_remote(p):
    return epath.Path(p)
  return epath.Path(os.path.abspath(os.path.expanduser(os.fspath(p))))


def local_cache(*parts: str) -> epath.Path:
  """A folder under this host's cache ($XDG_CACHE_HOME/rdmjax/...)."""
  base = os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache'))
  return path(os.path.join(base, 'rdmjax', *parts))


def relative(p, workdir) -> str | None:
  """p as a path relative to workdir (as results.json names files), or
  None for no path."""
  return str(path(p).relative_to(workdir)) if p else None
