"""The synthetic subject's generative model: ROIs, responses, embeddings.

Pure numpy functions of latents, filter channels and seeded generators;
`rdmjax.data.synthetic` writes their outputs in the Algonauts layout. The
model itself is described in docs/data.md, "The synthetic subject".
"""

from __future__ import annotations

import numpy as np

from rdmjax.data.synthetic_images import (
  LATENT_NAMES,
  POOL_RES,
  latent_matrix,
)

EMBED_DIM = 256
ROI_CLASSES = {
  'prf-visualrois': ('V1v', 'V1d', 'V2v', 'V2d', 'V3v', 'V3d', 'hV4'),
  'floc-bodies': ('EBA', 'FBA-1', 'FBA-2', 'mTL-bodies'),
  'floc-faces': ('OFA', 'FFA-1', 'FFA-2', 'mTL-faces', 'aTL-faces'),
  'floc-places': ('OPA', 'PPA', 'RSC'),
  'floc-words': ('OWFA', 'VWFA-1', 'VWFA-2', 'mfs-words', 'mTL-words'),
  'streams': (
    'early',
    'midventral',
    'midlateral',
    'midparietal',
    'ventral',
    'lateral',
    'parietal',
  ),
}
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


def _early_signal(chan: np.ndarray, prm: dict, idx: np.ndarray) -> np.ndarray:
  """Responses of early visual vertices to the filter maps.

  Args:
    chan: [n, 15, POOL_RES**2] f32 from `filter_channels`.
    prm: from `hemi_params`.
    idx: [c] indices of early vertices (prf-visualrois codes 1..7).

  Returns:
    [n, c] f32.
  """
  cx, cy, sigma = prm['cx'][idx], prm['cy'][idx], prm['sigma'][idx]
  grid = (np.arange(POOL_RES) + 0.5) / POOL_RES
  gy = np.exp(-((grid[None] - cy[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
  gx = np.exp(-((grid[None] - cx[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
  rf = (gy[:, :, None] * gx[:, None, :]).reshape(idx.size, -1)
  rf = (rf / rf.sum(1, keepdims=True)).astype(np.float32)
  pooled = (chan.reshape(-1, rf.shape[1]) @ rf.T).reshape(*chan.shape[:2], -1)
  energy = np.einsum('ncv,vc->nv', np.sqrt(pooled[:, :12]), prm['tune'][idx])
  lin = np.einsum('ncv,vc->nv', pooled[:, 12:], prm['w_lin'][idx])
  return standardise(energy) + 0.4 * standardise(lin)


def _early_params(prm: dict, hemi: str, rng: np.random.Generator) -> None:
  """Draws the early vertices' receptive fields and tunings into prm.

  Adds [v] arrays cx, cy, sigma (receptive field centre and size), [v, 12]
  tune (weights of the 12 Gabor energies) and [v, 3] w_lin (of luminance
  and colour), all zero outside prf-visualrois.
  """
  prf = prm['prf']
  early = np.flatnonzero(prf > 0)
  v = early.size
  i = prf[early] - 1
  # Contralateral hemifield; ventral = upper field (small y), dorsal = lower.
  ecc_x = np.abs(rng.normal(0, 0.2, v))
  cx = 0.5 + (1 if hemi == 'lh' else -1) * ecc_x
  ecc_y = np.abs(rng.normal(0, 0.2, v))
  sign_y = np.where(i == 6, rng.choice([-1, 1], v), np.where(i % 2, 1, -1))
  cy = 0.5 + sign_y * ecc_y
  cx, cy = np.clip(cx, 0.03, 0.97), np.clip(cy, 0.03, 0.97)
  sigma = (0.04 + 0.12 * np.hypot(ecc_x, ecc_y)) * np.asarray(PRF_RF_SCALE)[i]
  # Tuning: preferred orientation and frequency (V1 finer and sharper).
  th = np.tile(np.arange(4) * np.pi / 4, 3)
  lsf = np.repeat(np.log2([4.0, 8.0, 16.0]), 4)
  pref_th = rng.uniform(0, np.pi, v)
  pref_lsf = rng.normal(3.6 - 0.25 * i, 0.6)
  w = np.exp(
    np.asarray(PRF_KAPPA)[i, None] * (np.cos(2 * (th - pref_th[:, None])) - 1)
    - (lsf - pref_lsf[:, None]) ** 2 / (2 * 0.8**2)
  )
  colour_gain = np.where(i == 6, 3.0, 1.0)[:, None]  # hV4 likes colour
  w_lin = (
    rng.normal(0, 0.5, (v, 3)) * np.c_[np.ones(v), colour_gain, colour_gain]
  )
  for name, x in (
    ('cx', cx),
    ('cy', cy),
    ('sigma', sigma),
    ('tune', w.astype(np.float32)),
    ('w_lin', w_lin.astype(np.float32)),
  ):
    prm[name] = np.zeros((prf.size, *x.shape[1:]), x.dtype)
    prm[name][early] = x


def standardise(x: np.ndarray) -> np.ndarray:
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


def random_maps(rng: np.random.Generator, n_in: int, hidden: int = 32):
  """A fixed random tanh layer per higher ROI group."""
  groups = (*FLOC, 'other')
  return {
    g: (
      rng.normal(0, 1.5 / np.sqrt(n_in), (n_in, hidden)),
      rng.normal(0, 0.5, hidden),
    )
    for g in groups
  }


def latent_features(z: np.ndarray, maps: dict) -> dict[str, np.ndarray]:
  """The hidden units of the higher ROI groups' maps.

  Args:
    z: [n, L] standardised latents; maps: from `random_maps`.

  Returns:
    {group: [n, hidden] f64}.
  """
  return {g: np.tanh(z @ w1 + b1) for g, (w1, b1) in maps.items()}


def hemi_params(labels, maps, hemi, n_trials, rng) -> dict:
  """Draws every random parameter of one hemisphere's vertices, up front.

  The responses are then computed a few vertices at a time (`hemi_signal`,
  `measure`): every step of the model is per vertex, and these parameters
  are O(v) (the readouts O(hidden x v)).

  Args:
    labels: from `assign_rois`; maps: from `random_maps`; hemi: 'lh' or
      'rh'; n_trials: images x repeats, the rows of the shared noise.

  Returns:
    A dict: prf ([v] prf-visualrois codes); per higher group g of `maps`,
    member_g ([v] bool), readout_g ([hidden, v] f64) and, for floc groups,
    gain_g ([v], 0 outside the group); the early vertices' cx, cy, sigma,
    tune, w_lin (see `_early_params`); ncsnr ([v]); load ([NOISE_RANK, v]
    f32, unit columns) and factors ([n_trials, NOISE_RANK] f32), the shared
    noise's loadings and trial factors.
  """
  v = labels['streams'].size
  prm = {'prf': labels['prf-visualrois']}
  count = np.zeros(v)
  for g, (w1, _) in maps.items():
    # 'other' holds the vertices of no floc group.
    member = labels[g] > 0 if g in FLOC else count == 0
    prm[f'member_{g}'] = member
    prm[f'readout_{g}'] = rng.normal(
      0, 1 / np.sqrt(w1.shape[1]), (w1.shape[1], v)
    )
    count += member
    if g in FLOC:
      prm[f'gain_{g}'] = rng.uniform(1.0, 2.5, v) * member
  _early_params(prm, hemi, rng)
  prm['ncsnr'] = ncsnr(labels, rng)
  load = rng.standard_normal((NOISE_RANK, v)).astype(np.float32)
  load /= np.linalg.norm(load, axis=0)
  prm['load'] = load
  prm['factors'] = rng.standard_normal((n_trials, NOISE_RANK), np.float32)
  return prm


def _higher_signal(h, category, prm, cols: slice) -> np.ndarray:
  """Latent-driven responses of vertices `cols` of a hemisphere.

  Args:
    h: from `latent_features`; category: [n] int; prm: from `hemi_params`.

  Returns:
    [n, c] f32, each vertex the mean of its floc groups' maps ('other' if
    none) plus a boost for its floc classes' preferred category.
  """
  n = category.size
  c = prm['prf'][cols].size
  total = np.zeros((n, c))
  count = np.zeros(c)
  boost = np.zeros((n, c))
  for g, hidden in h.items():
    member = prm[f'member_{g}'][cols]
    total += (hidden @ prm[f'readout_{g}'][:, cols]) * member
    count += member
    if g in FLOC:
      boost += (category == FLOC[g][1])[:, None] * prm[f'gain_{g}'][cols]
  return standardise(total / count) + boost.astype(np.float32)


def hemi_signal(feats: dict, prm: dict, cols: slice) -> np.ndarray:
  """Noiseless signal of vertices `cols` of one hemisphere.

  Args:
    feats: h (from `latent_features`), category ([n] int) and chan ([n, 15,
      POOL_RES**2] f32 from `filter_channels`).
    prm: from `hemi_params`.
    cols: the vertices, a slice.

  Returns:
    [n, c] f32, per vertex mean 0 sd 1.
  """
  sig = _higher_signal(feats['h'], feats['category'], prm, cols)
  prf = prm['prf'][cols]
  early = prf > 0
  if early.any():
    idx = np.arange(prm['prf'].size)[cols][early]
    e = _early_signal(feats['chan'], prm, idx)
    # hV4 also carries some of the latent (object) drive.
    mix = np.where(prf[early] == 7, 0.6, 0.0).astype(np.float32)
    sig[:, early] = e + mix * standardise(sig[:, early])
  return standardise(sig)


def ncsnr(labels, rng) -> np.ndarray:
  """Per-vertex noise-ceiling SNR: [v] f64, highest in V1."""
  prf = labels['prf-visualrois']
  in_floc = np.any([labels[c] > 0 for c in FLOC], 0)
  lo = np.where(in_floc, FLOC_NCSNR[0], OTHER_NCSNR[0])
  hi = np.where(in_floc, FLOC_NCSNR[1], OTHER_NCSNR[1])
  for code, (a, b) in enumerate(PRF_NCSNR, 1):
    lo, hi = np.where(prf == code, a, lo), np.where(prf == code, b, hi)
  return rng.uniform(lo, hi)


def measure(signal, ncsnr, n_reps, noise, shared):
  """NSD-style trials: z-score each vertex over all kept trials, average.

  Args:
    signal: [n, v] f32 (mean 0, sd 1 per vertex); ncsnr: [v];
    n_reps: [n] int, the trials kept per image (1..n_repeats);
    noise: [n, n_repeats, v] f32 standard normal, each trial's own noise
      (overwritten: the trials are built in it);
    shared: [n * n_repeats, v] f32, the low-rank noise shared across
      vertices (trial factors @ unit loadings; overwritten).

  Returns:
    (saved [n, v] f32, noiseless [n, v] f32): the averaged z-scored trials,
    and the signal under the same affine map (their expectation).
  """
  n, n_repeats, v = noise.shape
  f32 = np.float32
  trials = noise
  trials *= f32(np.sqrt(1 - SHARED_NOISE))
  shared *= f32(np.sqrt(SHARED_NOISE))
  trials += shared.reshape(n, n_repeats, v)
  trials /= ncsnr.astype(f32)
  trials += signal[:, None]
  kept = (np.arange(n_repeats)[None] < n_reps[:, None])[..., None]
  n_kept = kept.sum()
  trials *= kept  # the dropped trials are never seen
  mean = trials.sum((0, 1), dtype=np.float64) / n_kept
  trials -= mean.astype(f32)
  trials *= kept
  var = sum(
    np.square(trials[:, r]).sum(0, dtype=np.float64) for r in range(n_repeats)
  )
  sd = np.sqrt(var / n_kept)
  saved = trials.sum(1) / sd.astype(f32) / n_reps[:, None].astype(f32)
  return saved.astype(f32), ((signal - mean) / sd).astype(f32)


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
  z = standardise(latent_matrix(lat)) * np.asarray(gain, np.float32)
  w1 = rng.normal(0, 1.5 / np.sqrt(z.shape[1]), (z.shape[1], EMBED_HIDDEN))
  h = np.tanh(z @ w1 + rng.normal(0, 0.5, EMBED_HIDDEN))
  w2 = rng.normal(0, 1 / np.sqrt(EMBED_HIDDEN), (EMBED_HIDDEN, dim))
  e = h @ w2 + rng.normal(0, EMBED_NOISE, (len(z), dim))
  return e.astype(np.float32)
