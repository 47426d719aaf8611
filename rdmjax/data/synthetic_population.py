"""A synthetic population: subjects of one latent model, shared images.

`write_population(root)` writes subj01 ... subjNN with
`rdmjax.data.synthetic.write_subject`, each from its own seed, and a pool of
images (`population_pool`) seen by them all: the first n_shared images are
in every subject's training set, with the same pixels, latents, latent
features' model and embeddings in each; `ensure_population` writes it only
when absent or made with other parameters.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np

from rdmjax.data import synthetic
from rdmjax.data.synthetic_images import draw_latents, latent_matrix, render
from rdmjax.data.synthetic_model import (
  random_maps,
  standardise,
  synthetic_embeddings,
)
from rdmjax.errors import InputError


def _rng(seed: int, *key: int) -> np.random.Generator:
  """A stream of the pool: the population seed, POOL_KEY and key."""
  return synthetic._rng(seed, synthetic.POOL_KEY, *key)


def population_pool(
  n_images: int, image_size: int, seed: int
) -> dict[str, object]:
  """A population's images: NSD ids, latents, rendered images, standardised
  latent matrix, the latent-feature model and the embeddings, all keyed by
  the population seed (an image is the same in every subject)."""
  ids = np.sort(_rng(seed, 0).choice(synthetic.N_NSD, n_images, replace=False))
  lat = draw_latents(_rng(seed, 1), n_images)
  images = np.empty((n_images, image_size, image_size, 3), np.uint8)
  blk = synthetic.IMAGE_BLOCK

  def block(b: slice) -> None:  # each block its own generator: any order
    part = {k: x[b] for k, x in lat.items()}
    images[b] = render(part, image_size, _rng(seed, 2, b.start // blk))

  synthetic._in_threads(
    block,
    synthetic._chunks(n_images, blk, blk),
    synthetic.IMAGE_WORKERS or synthetic._cpus(),
  )
  z = standardise(latent_matrix(lat))
  return dict(
    ids=ids,
    lat=lat,
    images=images,
    z=z,
    maps=random_maps(_rng(seed, 3), z.shape[1]),
    emb=synthetic_embeddings(lat, _rng(seed, 4)),
  )


def _population_plan(n_subjects, n_shared, n_train, n_test, nv_lh, nv_rh, seed):
  """Per subject: pool rows (train, test) and vertex counts. The first
  n_shared pool images are in every subject's training set (as NSD's
  shared images); each subject's other images are its own."""
  if not 1 <= n_subjects <= 8 or not 2 <= n_shared <= n_train - 2:
    raise InputError(
      f'synthetic population: n_subjects={n_subjects} must lie in [1, 8] '
      f'and n_shared={n_shared} in [2, n_train - 2 = {n_train - 2}]'
    )
  own = n_train - n_shared + n_test
  rng = _rng(seed, 5)
  scale = rng.uniform(0.85, 1.15, (n_subjects, 2))
  plans, start = [], n_shared
  for k in range(n_subjects):
    mine = np.arange(start, start + own)
    start += own
    train = np.sort(np.concatenate([np.arange(n_shared), mine[: own - n_test]]))
    plans.append(
      dict(
        subject=synthetic.SUBJECTS[k],
        rows=np.concatenate([train, mine[own - n_test :]]),
        n_vertices_lh=int(round(nv_lh * scale[k, 0])),
        n_vertices_rh=int(round(nv_rh * scale[k, 1])),
        seed=int(seed) * 1000 + k + 1,
      )
    )
  return plans, start


def write_population(
  root: str | os.PathLike,
  *,
  n_subjects: int = 8,
  n_shared: int = 150,
  n_train: int = 400,
  n_test: int = 50,
  n_vertices_lh: int = 700,
  n_vertices_rh: int = 760,
  image_size: int = 64,
  n_repeats: int = 3,
  seed: int = 0,
  progress: bool = True,
) -> list[Path]:
  """Writes subj01 ... subjNN under root, each in the Algonauts layout, from
  one latent model: the first n_shared images (by NSD id) are in every
  subject's training set, the others are each subject's own; images,
  embeddings and the latent-to-feature model are shared, while each
  subject has its own vertex counts (0.85 to 1.15 times the given ones),
  ROI layout, repeats and noise. `root/synthetic_extras/population.json`
  (written last) records the parameters.

  Returns:
    The subjects' folders.
  """
  desc = dict(
    format_version=synthetic.FORMAT_VERSION,
    n_subjects=int(n_subjects),
    n_shared=int(n_shared),
    n_train=int(n_train),
    n_test=int(n_test),
    n_vertices_lh=int(n_vertices_lh),
    n_vertices_rh=int(n_vertices_rh),
    image_size=int(image_size),
    n_repeats=int(n_repeats),
    seed=int(seed),
  )
  plans, n_pool = _population_plan(
    n_subjects, n_shared, n_train, n_test, n_vertices_lh, n_vertices_rh, seed
  )
  pool = population_pool(n_pool, image_size, seed)
  root = Path(root)
  marker = root / 'synthetic_extras' / 'population.json'
  marker.unlink(missing_ok=True)
  out = []
  for plan in plans:
    out.append(
      synthetic.write_subject(
        root,
        plan['subject'],
        n_train=n_train,
        n_test=n_test,
        n_vertices_lh=plan['n_vertices_lh'],
        n_vertices_rh=plan['n_vertices_rh'],
        image_size=image_size,
        n_repeats=n_repeats,
        seed=plan['seed'],
        progress=progress,
        _pool=dict(pool, rows=plan['rows'], describe=desc),
      )
    )
  marker.parent.mkdir(parents=True, exist_ok=True)
  synthetic.write_marker(marker, desc)
  return out


def ensure_population(root: str | os.PathLike, **kwargs) -> list[Path]:
  """The population under root, written only if absent, incomplete or made
  with other parameters (keyword arguments as `write_population`)."""
  root = Path(root)
  marker = root / 'synthetic_extras' / 'population.json'
  n = int(kwargs.get('n_subjects', 8))
  if marker.is_file():
    want = inspect.signature(write_population).parameters
    desc = {
      k: int(kwargs.get(k, v.default))
      for k, v in want.items()
      if v.kind == v.KEYWORD_ONLY and k != 'progress' and not k.startswith('_')
    }
    try:
      have = json.loads(marker.read_text())
    except ValueError:
      have = None
    if have == dict(desc, format_version=synthetic.FORMAT_VERSION):
      return [root / s for s in synthetic.SUBJECTS[:n]]
  return write_population(root, **kwargs)
