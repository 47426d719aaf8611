"""A run's inputs, checked before its first long stage (fail fast).

`plan(config, workdir, todo)` returns the config and stages to run, or
raises `InputError` (one line, exit code 2) before any work:

- the workdir can be written;
- real data (`data.root`): every subject of the run is found;
- a model on embeddings (mlp, concat_mlp) on real data: the subject has no
  synthetic embeddings, so the default source becomes CLIP's cache
  (WORKDIR/embeddings/clip.npz). If the cache is missing, the embedding
  stage is added before the others when the CLIP weights are on this
  machine; otherwise the run stops with both ways on (embed with weights
  put in place, or the Siamese CNN on pixels);
- the synthetic data a run will write fits on the disk;
- the embed stage has its CLIP weights (before it writes any data).
"""

from __future__ import annotations

import os
import shutil
import uuid

from rdmjax import data, paths
from rdmjax.data import algonauts
from rdmjax.embed import clip_weights
from rdmjax.errors import InputError
from rdmjax.models import EMBEDDING_MODELS


def _writable(workdir) -> None:
  probe = paths.path(workdir) / f'.write_test_{uuid.uuid4().hex[:8]}'
  try:
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise InputError(
      f'cannot write to {workdir} ({type(e).__name__}: {e.strerror or e}): '
      'choose a writable --workdir'
    ) from None


def _subjects(config) -> list[str]:
  return (
    data.subjects(config) if data.population(config) else [config.data.subject]
  )


def _real_data(config) -> None:

  root = os.path.expanduser(config.data.root)
  if not os.path.isdir(root):
    raise InputError(
      f'data.root {root} is not a folder: point --config.data.root at the '
      'Algonauts 2023 data (the folder that holds subj01 ... subj08)'
    )
  for s in _subjects(config):
    algonauts.SubjectPaths.find(root, s)


def _weights_present(config) -> bool:

  try:
    clip_weights.resolve(str(config.embed.model))
  except InputError:
    return False
  return True


def _no_embeddings(config) -> InputError:
  return InputError(
    'the MLP needs image embeddings, and this subject has none yet: either '
    f'put the CLIP weights ({config.embed.model}, e.g. `hf download '
    f'{config.embed.model}` on a machine with network, or a folder with '
    'config.json and model.safetensors as --config.embed.model=DIR) and '
    'rerun, which embeds the images first; or train the Siamese CNN on '
    'pixels: --config=configs/siamese_cnn.py'
  )


def _embeddings(config, workdir, todo: tuple) -> tuple:
  """The embedding source of a real-data run; maybe 'embed' added."""
  uses = 'train' in todo or 'eval' in todo or 'sweep' in todo
  if not (uses and config.model.name in EMBEDDING_MODELS):
    return todo
  if config.data.embeddings == 'synthetic':
    with config.unlocked():
      config.data.embeddings = 'clip'
  if config.data.embeddings == 'clip' and not _clip_backend(config):
    raise InputError(
      "data.embeddings=clip is the CLIP backend's cache, and embed.backend "
      'is not clip: run --mode=embed with these flags first, then train '
      'with --config.data.embeddings=WORKDIR/embeddings/NAME.npz (the cache '
      'it wrote)'
    )
  if config.data.embeddings != 'clip':
    if not paths.path(config.data.embeddings).is_file():
      raise InputError(
        f'embedding cache {config.data.embeddings} not found: give a cache '
        'that `rdmjax --mode=embed` wrote, or data.embeddings=clip'
      )
    return todo
  group = data.population(config)
  have = all(
    (
      paths.path(workdir) / (s if group else '') / 'embeddings' / 'clip.npz'
    ).is_file()
    for s in _subjects(config)
  )
  if have or 'embed' in todo:
    return todo
  if not _weights_present(config):
    raise _no_embeddings(config)
  first = next(i for i, s in enumerate(todo) if s != 'data')
  return (*todo[:first], 'embed', *todo[first:])


def _clip_backend(config) -> bool:
  return config.embed.get('backend', 'clip') == 'clip'


def _clip_weights_needed(config) -> bool:
  return _clip_backend(config) and not config.embed.get('random_init', False)


def synthetic_bytes(config) -> int:
  """Disk the synthetic subject (or population) takes: noisy and noiseless
  responses (float32) and the PNG images (about 3 bytes a pixel)."""
  if data.population(config):
    p = config.data.population
    n = p.n_subjects * (p.n_train + p.n_test)
    v = p.n_vertices_lh + p.n_vertices_rh
    return int(n * (v * 4 * 2 + 3 * p.image_size**2))
  s = config.data.synthetic
  n, v = s.n_train + s.n_test, s.n_vertices_lh + s.n_vertices_rh
  return int(n * (v * 4 * 2 + 3 * s.image_size**2))


def _disk(config, workdir) -> None:
  if config.data.root:
    return
  root = data.data_root(config, workdir)
  if (root / _subjects(config)[0]).is_dir():
    return  # written already (or being reused)
  need = synthetic_bytes(config)
  probe = root if root.exists() else root.parent
  while not probe.exists():
    probe = probe.parent
  free = shutil.disk_usage(probe).free
  if need > free:
    raise InputError(
      f'the synthetic data needs about {need / 2**30:.1f} GiB and '
      f'{probe} has {free / 2**30:.1f} GiB free: free some space or give '
      'another --workdir'
    )


def plan(config, workdir, todo: tuple) -> tuple:
  """Checks what the run needs; returns (config, todo) to run.

  config may come back changed (real data: data.embeddings 'clip'); todo
  may gain 'embed'. Raises InputError before any work otherwise.
  """
  _writable(workdir)
  if 'train' in todo and int(config.train.get('bootstrap', 1)) < 1:
    raise InputError(
      f'train.bootstrap={config.train.bootstrap}: every test score has an '
      'interval, which needs at least 1 draw (1000 is the default)'
    )
  if 'embed' in todo and _clip_weights_needed(config):
    clip_weights.resolve(str(config.embed.model))  # before any data is made
  if config.data.root:
    _real_data(config)
    config = config.copy_and_resolve_references()
    todo = _embeddings(config, workdir, tuple(todo))
  elif not paths.is_remote(workdir):
    _disk(config, workdir)
  return config, tuple(todo)
