"""A synthetic subject in the exact Algonauts 2023 layout, from a known model.

`write_subject(root)` writes `root/subj01/` with the same folders, file names,
dtypes and 32 ROI files as the real release (plus the post-challenge
`test_fmri/` and `noise_ceiling/`), and, beside it, `root/synthetic_extras/
subj01/` with synthetic model embeddings, the noiseless responses and
`params.json`. Everything is a deterministic function of the seed.

The generative model:

1. Latents per image: a category (8: face, body, house, text, fruit, car,
   tree, flower; each a colour and a few shapes), object position (x, y),
   size and tilt, a background grating's orientation, spatial frequency and
   contrast, and 4 continuous "semantic" latents (a category prototype plus
   noise). Nuisances the brain still sees in the pixels: grating phase,
   background tint, object colour jitter, pixel noise.
2. Images: the grating times the tint, the object's shapes drawn over it with
   anti-aliased edges, saved as RGB PNGs.
3. Early visual ROIs (V1v..hV4): a V1-like filter model of the saved pixels.
   Quadrature Gabor energy (4 orientations x 3 spatial frequencies) plus
   luminance and two colour-opponent maps, pooled by each vertex's Gaussian
   receptive field: left hemisphere = right visual field, ventral (v) =
   upper field, dorsal (d) = lower field; RFs grow V1 < V2 < V3 < hV4 and
   with eccentricity. Each vertex weighs the channels by its preferred
   orientation and frequency (sharpest in V1); hV4 adds some latent drive.
4. Higher ROIs (floc-*, and vertices outside prf-visualrois): the
   standardised latents through a fixed random 2-layer tanh map per ROI class
   (faces, bodies, places, words, other), plus a category-selective boost
   (face ROIs for faces, body ROIs for bodies, place ROIs for houses, word
   ROIs for text).
5. Noise as in NSD: each vertex's signal is standardised over images; a trial
   is signal + Gaussian noise of sd 1/ncsnr (ncsnr per vertex, highest in
   V1, lowest outside the floc ROIs). Every image has `n_repeats` trials;
   training images keep a random 1..n_repeats of them, test images all.
   Trials are z-scored per vertex (over all kept trials, like NSD's
   per-session z-score) and the kept repeats averaged; the noiseless
   response is the signal under the same affine map, so it is the
   expectation of the saved value. The noise ceiling file holds
   ncsnr^2 / (ncsnr^2 + 1/n_repeats), as the real prep script.
6. Synthetic embeddings ([n, 256]), a stand-in for a pretrained vision
   model: a fixed random 1-layer tanh map (128 units) of the latents such a
   model could read from the pixels (category, semantic latents, size,
   position, tilt, grating orientation, spatial frequency and contrast),
   then a random linear read-out plus Gaussian noise. They see the
   latents only partly: not the nuisances (grating phase, background tint,
   object colour jitter, pixel noise), which still move the early visual
   responses, nor the trial noise; the map is nonlinear and noisy; and the
   category and semantic latents are weighted up (as object identity
   dominates real model embeddings), so the embedding geometry is not the
   brain's. Their zero-shot RSA is therefore clearly below the ceiling,
   while a pair model trained on them can re-weight what they see and get
   near it (figures in README.md and tests/synthetic_test.py).

`extras_dir(root)` holds `embeddings.npz` (the embedding cache format of
`rdmjax.data.embeddings`: train rows, then test rows), `noiseless.npz`
(`{lh,rh}_{train,test}` [n, v] f32 noiseless responses; `latents_{train,
test}` [n, 21] f32 named by `latent_names`; `n_reps_train` [n_train] int, the
repeats averaged) and `params.json` (the parameters and `format_version`,
written last: a subject without it is incomplete and written again).
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
from rdmjax.data.synthetic_images import (  # noqa: F401 - CATEGORIES is API
  CATEGORIES,
  LATENT_NAMES,
  POOL_RES,
  draw_latents,
  filter_channels,
  latent_matrix,
  render,
)
from rdmjax.errors import InputError

FORMAT_VERSION = 1
N_FSAVERAGE = 163842
N_NSD = 73000
EMBED_DIM = 256

ROI_CLASSES = {
  'prf-visualrois': ('V1v', 'V1d', 'V2v', 'V2d', 'V3v', 'V3d', 'hV4'),
  'floc-bodies': ('EBA', 'FBA-1', 'FBA-2', 'mTL-bodies'),
  'floc-faces': ('OFA', 'FFA-1', 'FFA-2', 'mTL-faces', 'aTL-faces'),
  'floc-places': ('OPA', 'PPA', 'RSC'),
  'floc-words': ('OWFA', 'VWFA-1', 'VWFA-2', 'mfs-words', 'mTL-words'),
  'streams': (
    'early', 'midventral', 'midlateral', 'midparietal', 'ventral',
    'lateral', 'parietal',
  ),
}  # fmt: skip
# Fraction of a hemisphere's vertices in prf-visualrois, and its ROI shares.
PRF_FRACTION = 0.36
PRF_SHARES = (0.17, 0.17, 0.14, 0.14, 0.12, 0.12, 0.14)
# Per early ROI: RF size factor, orientation sharpness, ncsnr range.
PRF_RF_SCALE = (1.0, 1.0, 1.5, 1.5, 2.1, 2.1, 3.0)
PRF_KAPPA = (2.5, 2.5, 1.8, 1.8, 1.2, 1.2, 0.6)
PRF_NCSNR = (
  ((0.4, 0.8),) * 2 + ((0.35, 0.7),) * 2 + ((0.3, 0.6),) * 2 + ((0.25, 0.5),)
)
# floc class -> (fraction of higher vertices labelled, preferred category).
FLOC = {
  'floc-faces': (0.22, 0),
  'floc-bodies': (0.18, 1),
  'floc-places': (0.16, 2),
  'floc-words': (0.16, 3),
}
FLOC_NCSNR, OTHER_NCSNR = (0.2, 0.5), (0.1, 0.35)
# Noise shared across vertices (a low-rank part, like NSD's global
# fluctuations): its share of each vertex's noise variance, and its rank.
SHARED_NOISE, NOISE_RANK = 0.3, 8
# Synthetic embeddings: version (in params.json, so cached subjects with
# older embeddings are written again), hidden width, noise sd, and the
# weights of the category (is_*) and semantic latents (the rest: 1).
EMBED_VERSION = 2
EMBED_HIDDEN, EMBED_NOISE = 128, 0.2
EMBED_GAIN = {'is': 2.0, 'semantic': 1.5}


def extras_dir(root: str | os.PathLike, subject: str = 'subj01') -> Path:
  """Where a synthetic subject's embeddings, noiseless responses and params
  live: `root/synthetic_extras/subject`."""
  return Path(root) / 'synthetic_extras' / subject


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


def _early_signal(
  chan: np.ndarray, roi: np.ndarray, hemi: str, rng: np.random.Generator
) -> np.ndarray:
  """Responses of early visual vertices (roi codes 1..7) to the filter maps.

  Args:
    chan: [n, 15, POOL_RES**2] f32 from `filter_channels`.
    roi: [v] prf-visualrois codes, all in 1..7.

  Returns:
    [n, v] f32.
  """
  v = roi.size
  i = roi - 1
  # Contralateral hemifield; ventral = upper field (small y), dorsal = lower.
  ecc_x = np.abs(rng.normal(0, 0.2, v))
  cx = 0.5 + (1 if hemi == 'lh' else -1) * ecc_x
  ecc_y = np.abs(rng.normal(0, 0.2, v))
  sign_y = np.where(i == 6, rng.choice([-1, 1], v), np.where(i % 2, 1, -1))
  cy = 0.5 + sign_y * ecc_y
  cx, cy = np.clip(cx, 0.03, 0.97), np.clip(cy, 0.03, 0.97)
  sigma = (0.04 + 0.12 * np.hypot(ecc_x, ecc_y)) * np.asarray(PRF_RF_SCALE)[i]
  grid = (np.arange(POOL_RES) + 0.5) / POOL_RES
  gy = np.exp(-((grid[None] - cy[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
  gx = np.exp(-((grid[None] - cx[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
  rf = (gy[:, :, None] * gx[:, None, :]).reshape(v, -1)
  rf = (rf / rf.sum(1, keepdims=True)).astype(np.float32)
  pooled = (chan.reshape(-1, rf.shape[1]) @ rf.T).reshape(*chan.shape[:2], v)
  # Tuning: preferred orientation and frequency (V1 finer and sharper).
  th = np.tile(np.arange(4) * np.pi / 4, 3)
  lsf = np.repeat(np.log2([4.0, 8.0, 16.0]), 4)
  pref_th = rng.uniform(0, np.pi, v)
  pref_lsf = rng.normal(3.6 - 0.25 * i, 0.6)
  w = np.exp(
    np.asarray(PRF_KAPPA)[i, None] * (np.cos(2 * (th - pref_th[:, None])) - 1)
    - (lsf - pref_lsf[:, None]) ** 2 / (2 * 0.8**2)
  )
  energy = np.einsum(
    'ncv,vc->nv', np.sqrt(pooled[:, :12]), w.astype(np.float32)
  )
  colour_gain = np.where(i == 6, 3.0, 1.0)[:, None]  # hV4 likes colour
  w_lin = (
    rng.normal(0, 0.5, (v, 3)) * np.c_[np.ones(v), colour_gain, colour_gain]
  )
  lin = np.einsum('ncv,vc->nv', pooled[:, 12:], w_lin.astype(np.float32))
  return _standardise(energy) + 0.4 * _standardise(lin)


def _standardise(x: np.ndarray) -> np.ndarray:
  sd = x.std(0)
  return ((x - x.mean(0)) / np.where(sd > 0, sd, 1)).astype(np.float32)


def assign_rois(v: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Labels one hemisphere's vertices with every ROI class.

  Every ROI gets vertices; floc classes overlap each other and `streams`
  overlaps all (V1-V3 are 'early', hV4 'midventral'), as in the real masks.

  Returns:
    {class: [v] int64 codes (0 = outside)} for the 6 classes.
  """
  perm = rng.permutation(v)
  n_prf = round(PRF_FRACTION * v)
  counts = np.floor(np.asarray(PRF_SHARES) * n_prf).astype(int)
  counts[: n_prf - counts.sum()] += 1
  out = {c: np.zeros(v, np.int64) for c in ROI_CLASSES}
  out['prf-visualrois'][perm[:n_prf]] = np.repeat(np.arange(1, 8), counts)
  higher = perm[n_prf:]
  for cls, (frac, _) in FLOC.items():
    sub = rng.choice(higher, round(frac * higher.size), replace=False)
    out[cls][sub] = np.arange(sub.size) % len(ROI_CLASSES[cls]) + 1
  streams = out['streams']
  prf = out['prf-visualrois']
  streams[(prf >= 1) & (prf <= 6)] = 1
  streams[prf == 7] = 2
  in_floc = np.zeros(v, bool)
  for cls in FLOC:
    in_floc |= out[cls] > 0
  others = rng.permutation(higher[~in_floc[higher]])
  streams[others] = np.array([2, 3, 4, 5, 6, 7, 0])[np.arange(others.size) % 7]
  ventral = (out['floc-faces'] + out['floc-places'] + out['floc-words']) > 0
  lateral = (out['floc-bodies'] > 0) & ~ventral
  mid = rng.random(v) < 0.3
  streams[ventral] = np.where(mid, 2, 5)[ventral]
  streams[lateral] = np.where(mid, 3, 6)[lateral]
  return out


def _random_maps(rng: np.random.Generator, n_in: int, hidden: int = 32):
  """A fixed random tanh layer per higher ROI group."""
  groups = (*FLOC, 'other')
  return {
    g: (
      rng.normal(0, 1.5 / np.sqrt(n_in), (n_in, hidden)),
      rng.normal(0, 0.5, hidden),
    )
    for g in groups
  }


def _higher_signal(z, labels, maps, rng, category) -> np.ndarray:
  """Latent-driven responses of all vertices of a hemisphere.

  Args:
    z: [n, L] standardised latents; labels: from `assign_rois`; maps: from
      `_random_maps`; category: [n] int.

  Returns:
    [n, v] f32, each vertex the mean of its floc groups' maps ('other' if
    none) plus a boost for its floc classes' preferred category.
  """
  v = labels['streams'].size
  total = np.zeros((z.shape[0], v))
  count = np.zeros(v)
  boost = np.zeros((z.shape[0], v))
  for g, (w1, b1) in maps.items():
    member = labels[g] > 0 if g in FLOC else np.ones(v, bool)
    if g == 'other':
      member = count == 0
    h = np.tanh(z @ w1 + b1)
    total += (
      h @ rng.normal(0, 1 / np.sqrt(w1.shape[1]), (w1.shape[1], v))
    ) * member
    count += member
    if g in FLOC:
      gain = rng.uniform(1.0, 2.5, v) * member
      boost += (category == FLOC[g][1])[:, None] * gain
  return _standardise(total / count) + boost.astype(np.float32)


def _hemi_signal(chan, z, lat, labels, maps, hemi, rng) -> np.ndarray:
  """Noiseless signal of one hemisphere: [n, v] f32, per vertex mean 0 sd 1."""
  sig = _higher_signal(z, labels, maps, rng, lat['category'])
  prf = labels['prf-visualrois']
  early = prf > 0
  e = _early_signal(chan, prf[early], hemi, rng)
  # hV4 also carries some of the latent (object) drive.
  mix = np.where(prf[early] == 7, 0.6, 0.0).astype(np.float32)
  sig[:, early] = e + mix * _standardise(sig[:, early])
  return _standardise(sig)


def _ncsnr(labels, rng) -> np.ndarray:
  """Per-vertex noise-ceiling SNR: [v] f64, highest in V1."""
  prf = labels['prf-visualrois']
  in_floc = np.any([labels[c] > 0 for c in FLOC], 0)
  lo = np.where(in_floc, FLOC_NCSNR[0], OTHER_NCSNR[0])
  hi = np.where(in_floc, FLOC_NCSNR[1], OTHER_NCSNR[1])
  for code, (a, b) in enumerate(PRF_NCSNR, 1):
    lo, hi = np.where(prf == code, a, lo), np.where(prf == code, b, hi)
  return rng.uniform(lo, hi)


def _measure(signal, ncsnr, n_reps, n_repeats, rng):
  """NSD-style trials: z-score each vertex over all kept trials, average.

  Args:
    signal: [n, v] f32 (mean 0, sd 1 per vertex); ncsnr: [v];
    n_reps: [n] int, the trials kept per image (1..n_repeats).

  Returns:
    (saved [n, v] f32, noiseless [n, v] f32): the averaged z-scored trials,
    and the signal under the same affine map (their expectation).
  """
  n, v = signal.shape
  noise = rng.standard_normal((n, n_repeats, v), np.float32)
  load = rng.standard_normal((NOISE_RANK, v)).astype(np.float32)
  load /= np.linalg.norm(load, axis=0)
  shared = rng.standard_normal((n * n_repeats, NOISE_RANK), np.float32) @ load
  noise = np.sqrt(1 - SHARED_NOISE) * noise + np.sqrt(
    SHARED_NOISE
  ) * shared.reshape(n, n_repeats, v)
  trials = signal[:, None] + (noise / ncsnr).astype(np.float32)
  kept = (np.arange(n_repeats)[None] < n_reps[:, None])[..., None]
  n_kept = kept.sum()
  mean = (trials * kept).sum((0, 1)) / n_kept
  sd = np.sqrt((((trials - mean) * kept) ** 2).sum((0, 1)) / n_kept)
  saved = (((trials - mean) / sd) * kept).sum(1) / n_reps[:, None]
  return saved.astype(np.float32), ((signal - mean) / sd).astype(np.float32)


def synthetic_embeddings(lat, rng, dim: int = EMBED_DIM) -> np.ndarray:
  """Model embeddings that see the task latents, not the nuisances.

  Args:
    lat: from `draw_latents`.
    rng: draws the fixed map and the noise.
    dim: embedding width.

  Returns:
    [n, dim] f32: tanh(z W1 + b1) W2 + noise, z the standardised seen
    latents (category and semantic ones weighted by EMBED_GAIN).
  """
  # latent_matrix holds the task latents only: the nuisances stay unseen.
  gain = [EMBED_GAIN.get(k.split('_')[0], 1.0) for k in LATENT_NAMES]
  z = _standardise(latent_matrix(lat)) * np.asarray(gain, np.float32)
  w1 = rng.normal(0, 1.5 / np.sqrt(z.shape[1]), (z.shape[1], EMBED_HIDDEN))
  h = np.tanh(z @ w1 + rng.normal(0, 0.5, EMBED_HIDDEN))
  w2 = rng.normal(0, 1 / np.sqrt(EMBED_HIDDEN), (EMBED_HIDDEN, dim))
  e = h @ w2 + rng.normal(0, EMBED_NOISE, (len(z), dim))
  return e.astype(np.float32)


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
  rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(
    [p['seed'], FORMAT_VERSION]).spawn(8)]  # fmt: skip
  ids = rngs[0].choice(N_NSD, n, replace=False)
  ids = np.concatenate([np.sort(ids[:n_train]), np.sort(ids[n_train:])])
  lat = draw_latents(rngs[1], n)
  images = render(lat, p['image_size'], rngs[2])
  chan = filter_channels(images)
  z = _standardise(latent_matrix(lat))
  maps = _random_maps(rngs[3], z.shape[1])
  n_reps = np.concatenate(
    [rngs[4].integers(1, n_rep + 1, n_train), np.full(n_test, n_rep)]
  )
  labels, out = {}, {}
  for k, hemi in enumerate(('lh', 'rh')):
    rng = np.random.default_rng(rngs[5].integers(2**63) + k)
    labels[hemi] = assign_rois(p[f'n_vertices_{hemi}'], rng)
    sig = _hemi_signal(chan, z, lat, labels[hemi], maps, hemi, rng)
    snr = _ncsnr(labels[hemi], rng)
    out[hemi] = _measure(sig, snr, n_reps, n_rep, rng)
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
    extras / 'embeddings.npz', emb, ids, ['train'] * n_train + ['test'] * n_test,
    dict(model='synthetic', layer='latents-partial', preprocessing='none',
         subject=p['subject']),
  )  # fmt: skip
  arrays = {
    f'{hemi}_{short}': out[hemi][1][sl]
    for hemi in ('lh', 'rh')
    for short, sl in (('train', slice(0, n_train)), ('test', slice(n_train, n)))
  }
  np.savez(
    extras / 'noiseless.npz', **arrays,
    latents_train=latent_matrix(lat)[:n_train],
    latents_test=latent_matrix(lat)[n_train:],
    latent_names=np.asarray(LATENT_NAMES), n_reps_train=n_reps[:n_train],
  )  # fmt: skip


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
    subject, n_train=int(n_train), n_test=int(n_test),
    n_vertices_lh=int(n_vertices_lh), n_vertices_rh=int(n_vertices_rh),
    image_size=int(image_size), n_repeats=int(n_repeats), seed=int(seed),
  )  # fmt: skip
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
