"""A synthetic subject in the exact Algonauts 2023 layout, from a known model.

`write_subject(root)` writes `root/subj01/` as the real release lays it out
(plus `test_fmri/` and `noise_ceiling/`) and `extras_dir(root)` beside it:
`embeddings.npz` (synthetic model embeddings), `noiseless.npz` (the
noiseless responses, read by `noiseless`) and `params.json` (written last:
a subject without it is incomplete). Deterministic in the seed. The
generative model and the extras' contents: README.md, "The synthetic
subject".
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from rdmjax.data import embeddings as embeddings_lib
from rdmjax.data.synthetic_images import (
  LATENT_NAMES,
  draw_latents,
  filter_channels,
  latent_matrix,
  render,
)
from rdmjax.data.synthetic_model import (
  EMBED_VERSION,
  ROI_CLASSES,
  assign_rois,
  hemi_signal,
  measure,
  ncsnr,
  random_maps,
  standardise,
  synthetic_embeddings,
)
from rdmjax.errors import InputError

FORMAT_VERSION = 1
N_FSAVERAGE = 163842
N_NSD = 73000


def extras_dir(root: str | os.PathLike, subject: str = 'subj01') -> Path:
  """Where a synthetic subject's embeddings, noiseless responses and params
  live: `root/synthetic_extras/subject`."""
  return Path(root) / 'synthetic_extras' / subject


def noiseless(
  root: str | os.PathLike, subject, roi: str, split: str = 'train'
) -> np.ndarray | None:
  """The noiseless responses of an ROI, [n_images, v] f32 (LH then RH).

  Args:
    root: the data root holding the synthetic subject.
    subject: its `rdmjax.data.algonauts.Subject` (for the ROI masks).
    roi: an ROI name, as `Subject.responses`.
    split: 'train' or 'test'.

  Returns:
    The array, or None when the subject has no noiseless responses (real
    data, or a synthetic subject written without them).
  """
  path = extras_dir(root, subject.name) / 'noiseless.npz'
  if not path.is_file():
    return None
  lh, rh = subject.roi_mask(roi)
  with np.load(path) as f:
    return np.concatenate(
      [f[f'lh_{split}'][:, lh], f[f'rh_{split}'][:, rh]], axis=1
    )


def _params(subject, **kw) -> dict:
  return dict(
    format_version=FORMAT_VERSION,
    embed_version=EMBED_VERSION,
    subject=subject,
    **kw,
  )


def _check(p: dict) -> None:
  bad = [
    (k, lo, hi)
    for k, lo, hi in (
      ('n_train', 2, 9999),
      ('n_test', 2, 9999),
      ('n_vertices_lh', 100, N_FSAVERAGE),
      ('n_vertices_rh', 100, N_FSAVERAGE),
      ('image_size', 32, 1024),
      ('n_repeats', 1, 100),
    )
    if not lo <= int(p[k]) <= hi
  ]
  if bad:
    k, lo, hi = bad[0]
    raise InputError(f'synthetic subject: {k}={p[k]} must lie in [{lo}, {hi}]')
  if not re.fullmatch(r'subj0[1-8]', p['subject']):
    raise InputError(
      f'synthetic subject {p["subject"]!r} is not subj01 ... subj08 (the '
      'names the reader accepts): use e.g. subj01'
    )


def _write_rois(folder: Path, labels: dict, rng: np.random.Generator) -> None:
  """Writes the 32 roi_masks files (labels: {hemi: {class: [v] codes}})."""
  folder.mkdir(parents=True)
  for cls, names in ROI_CLASSES.items():
    mapping = {0: 'Unknown', **{i: s for i, s in enumerate(names, 1)}}
    np.save(folder / f'mapping_{cls}.npy', mapping)
  for hemi, lab in labels.items():
    v = lab['streams'].size
    where = np.sort(rng.choice(N_FSAVERAGE, v, replace=False))
    allv = np.zeros(N_FSAVERAGE, np.int64)
    allv[where] = 1
    np.save(folder / f'{hemi}.all-vertices_fsaverage_space.npy', allv)
    for cls in ROI_CLASSES:
      fsa = np.zeros(N_FSAVERAGE, np.int64)
      fsa[where] = lab[cls]
      np.save(folder / f'{hemi}.{cls}_challenge_space.npy', lab[cls])
      np.save(folder / f'{hemi}.{cls}_fsaverage_space.npy', fsa)


def _write_images(folder: Path, split: str, ids, images, progress) -> None:
  from concurrent.futures import ThreadPoolExecutor

  from tqdm import tqdm

  folder.mkdir(parents=True)

  def save(i):  # PIL's encoder releases the GIL: threads write in parallel
    name = f'{split}-{i + 1:04d}_nsd-{ids[i]:05d}.png'
    Image.fromarray(images[i], 'RGB').save(folder / name, compress_level=1)

  with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
    done = pool.map(save, range(len(ids)))
    for _ in tqdm(done, total=len(ids), desc=split, disable=not progress):
      pass


def _generate(p: dict, subj: Path, extras: Path, progress: bool) -> None:
  """Writes a subject into subj/ and its extras into extras/ (not params)."""
  n_train, n_test, n_rep = p['n_train'], p['n_test'], p['n_repeats']
  n = n_train + n_test
  rngs = [
    np.random.default_rng(s)
    for s in np.random.SeedSequence([p['seed'], FORMAT_VERSION]).spawn(8)
  ]
  ids = rngs[0].choice(N_NSD, n, replace=False)
  ids = np.concatenate([np.sort(ids[:n_train]), np.sort(ids[n_train:])])
  lat = draw_latents(rngs[1], n)
  images = render(lat, p['image_size'], rngs[2])
  chan = filter_channels(images)
  z = standardise(latent_matrix(lat))
  maps = random_maps(rngs[3], z.shape[1])
  n_reps = np.concatenate(
    [rngs[4].integers(1, n_rep + 1, n_train), np.full(n_test, n_rep)]
  )
  labels, out = {}, {}
  for k, hemi in enumerate(('lh', 'rh')):
    rng = np.random.default_rng(rngs[5].integers(2**63) + k)
    labels[hemi] = assign_rois(p[f'n_vertices_{hemi}'], rng)
    sig = hemi_signal(chan, z, lat, labels[hemi], maps, hemi, rng)
    snr = ncsnr(labels[hemi], rng)
    out[hemi] = measure(sig, snr, n_reps, n_rep, rng)
    nc = snr**2 / (snr**2 + np.mean(1 / n_reps[n_train:]))
    d = subj / 'test_split' / 'noise_ceiling'
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / f'{hemi}_noise_ceiling.npy', nc.astype(np.float64))
  for split, sl, stem in (
    ('training', slice(0, n_train), 'training_split/training'),
    ('test', slice(n_train, n), 'test_split/test'),
  ):
    d = subj / f'{stem}_fmri'
    d.mkdir(parents=True)
    for hemi in ('lh', 'rh'):
      np.save(d / f'{hemi}_{split}_fmri.npy', out[hemi][0][sl])
    short = 'train' if split == 'training' else 'test'
    _write_images(subj / f'{stem}_images', short, ids[sl], images[sl], progress)
  _write_rois(subj / 'roi_masks', labels, rngs[6])
  extras.mkdir(parents=True)
  emb = synthetic_embeddings(lat, rngs[7])
  embeddings_lib.write(
    extras / 'embeddings.npz',
    emb,
    ids,
    ['train'] * n_train + ['test'] * n_test,
    dict(
      model='synthetic',
      layer='latents-partial',
      preprocessing='none',
      subject=p['subject'],
    ),
  )
  arrays = {
    f'{hemi}_{short}': out[hemi][1][sl]
    for hemi in ('lh', 'rh')
    for short, sl in (('train', slice(0, n_train)), ('test', slice(n_train, n)))
  }
  np.savez(
    extras / 'noiseless.npz',
    **arrays,
    latents_train=latent_matrix(lat)[:n_train],
    latents_test=latent_matrix(lat)[n_train:],
    latent_names=np.asarray(LATENT_NAMES),
    n_reps_train=n_reps[:n_train],
  )


def write_subject(
  root: str | os.PathLike,
  subject: str = 'subj01',
  *,
  n_train: int = 600,
  n_test: int = 100,
  n_vertices_lh: int = 1900,
  n_vertices_rh: int = 2050,
  image_size: int = 128,
  n_repeats: int = 3,
  seed: int = 0,
  progress: bool = True,
) -> Path:
  """Writes a synthetic subject in the Algonauts layout (see module doc).

  Written into a temporary folder and renamed into place; `params.json` in
  `extras_dir` is written last, so a subject without it is incomplete.
  A `root/subject` that has no `extras_dir` was not written here and is
  never replaced.

  Returns:
    root/subject.
  """
  p = _params(
    subject,
    n_train=int(n_train),
    n_test=int(n_test),
    n_vertices_lh=int(n_vertices_lh),
    n_vertices_rh=int(n_vertices_rh),
    image_size=int(image_size),
    n_repeats=int(n_repeats),
    seed=int(seed),
  )
  _check(p)
  root = Path(root)
  target, extras = root / subject, extras_dir(root, subject)
  if target.exists() and not extras.is_dir():
    raise InputError(
      f'{target} exists and is not a synthetic subject: remove it or choose '
      'another data root for the synthetic data'
    )
  tmp = root / f'.{subject}.synthetic-tmp-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    _generate(p, tmp / 'subject', tmp / 'extras', progress)
    (extras / 'params.json').unlink(missing_ok=True)
    shutil.rmtree(extras, ignore_errors=True)
    extras.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp / 'extras', extras)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp / 'subject', target)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  marker = extras / 'params.json'
  marker.with_suffix('.tmp').write_text(json.dumps(p, indent=1, sort_keys=True))
  os.replace(marker.with_suffix('.tmp'), marker)
  return target


def ensure_subject(
  root: str | os.PathLike, subject: str = 'subj01', **kwargs
) -> Path:
  """Returns root/subject, writing it only if absent, incomplete or written
  with other parameters (same keyword arguments as `write_subject`)."""
  progress = kwargs.pop('progress', True)
  root = Path(root)
  marker = extras_dir(root, subject) / 'params.json'
  defaults = {
    k: v.default
    for k, v in inspect.signature(write_subject).parameters.items()
    if v.kind == v.KEYWORD_ONLY and k != 'progress'
  }
  unknown = set(kwargs) - set(defaults)
  if unknown:
    raise InputError(f'synthetic subject: unknown parameters {sorted(unknown)}')
  want = _params(
    subject, **{k: int(kwargs.get(k, d)) for k, d in defaults.items()}
  )
  if marker.is_file() and (root / subject).is_dir():
    try:
      if json.loads(marker.read_text()) == want:
        return root / subject
    except ValueError:
      pass
  return write_subject(root, subject, progress=progress, **kwargs)
