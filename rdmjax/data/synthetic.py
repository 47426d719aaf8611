"""A synthetic subject in the exact Algonauts 2023 layout, from a known model.

`write_subject(root)` writes `root/subj01/` as the real release lays it out
(plus `test_fmri/` and `noise_ceiling/`) and `extras_dir(root)` beside it:
`embeddings.npz` (synthetic model embeddings), `noiseless/` (the noiseless
responses `{lh,rh}_{train,test}.npy`, [n, v] float32, read by `noiseless`,
and `latents.npz`: `latents_{train,test}` [n, 21] named by `latent_names`,
and `n_reps_train`, the repeats averaged per training image; all read by
`read_extras`) and `params.json` (written last: a subject without it is
incomplete). The generative model and the extras' contents: docs/data.md, "The
synthetic subject".

Any size is written in bounded memory and in parallel threads (numpy's
loops, its noise generator, zlib and file writes release the GIL):
images are rendered, saved and filtered IMAGE_BLOCK at a time by each
image thread, keeping only their filter channels; each hemisphere's random
parameters are drawn up front (O(v)), then its signal, trials and z-scoring
are computed VERTEX_BLOCK vertices at a time, VERTEX_CHUNK per vertex
thread, and written a chunk at a time straight into the `.npy` files
(NSD subj01's size, 10,000 images of 425 px and 39,548 vertices, on a
shared 2-core AMD EPYC: 7 min, 3 of them images, peak RSS 1.2 GB; 2.5 GB
with the threads of 16 CPUs; `launch/writer_bench.py` times the images:
60-100 a second, 14-18 ms of CPU each). Deterministic in the
seed, and the bytes do not depend on the chunk sizes or threads: every
random stream is keyed by the seed and a fixed block (IMAGE_BLOCK images
rendered by one generator, VERTEX_BLOCK vertices' trial noise from one),
everything is computed per fixed block too (a BLAS kernel, so a product's
rounding, is chosen by its shape), and chunks, whole blocks, only group
the work and the writes. (Another machine's BLAS may round the products
otherwise: the files are bitwise the same on one machine, to ~1e-6 across
machines.)
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import re
import shutil
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rdmjax.data import embeddings as embeddings_lib
from rdmjax.data.algonauts import read_columns
from rdmjax.data.synthetic_images import (
  LATENT_NAMES,
  POOL_RES,
  draw_latents,
  filter_channels,
  latent_matrix,
  png_bytes,
  render,
)
from rdmjax.data.synthetic_model import (
  EMBED_VERSION,
  ROI_CLASSES,
  assign_rois,
  hemi_params,
  hemi_signal,
  latent_features,
  measure,
  random_maps,
  standardise,
  synthetic_embeddings,
)
from rdmjax.errors import InputError

FORMAT_VERSION = 2
N_FSAVERAGE = 163842
N_NSD = 73000
HEMIS = ('lh', 'rh')
SUBJECTS = tuple(f'subj0{k}' for k in range(1, 9))
# Random streams and computations come per block (fixed: they set the
# values). Images are made a block per task, responses a chunk of whole
# blocks per task (written per chunk), tasks run in threads (chunk sizes and
# threads only set the memory and the speed): IMAGE_WORKERS threads (None:
# one per CPU) each hold one block's images; VERTEX_WORKERS threads (None:
# one per CPU, as many as VERTEX_MEMORY bytes allow) each one chunk's
# [n_images, chunk] responses and one block's work arrays.
IMAGE_BLOCK, IMAGE_WORKERS = 32, None
VERTEX_BLOCK, VERTEX_CHUNK, VERTEX_WORKERS = 256, 1024, None
VERTEX_MEMORY = 2 * 2**30
# The streams' keys (SeedSequence spawn keys, after the seed).
_IDS, _LATENTS, _RENDER, _MAPS, _REPS, _HEMI, _NOISE, _ROIS, _EMBED = range(9)
POOL_KEY = 9  # a population's shared image pool (`synthetic_population`)


def extras_dir(root: str | os.PathLike, subject: str = 'subj01') -> Path:
  """Where a synthetic subject's embeddings, noiseless responses and params
  live: `root/synthetic_extras/subject`."""
  return Path(root) / 'synthetic_extras' / subject


def noiseless(
  root: str | os.PathLike, subject, roi: str, split: str = 'train', rows=None
) -> np.ndarray | None:
  """The noiseless responses of an ROI, [n_images, v] f32 (LH then RH).

  Reads only the ROI's columns into memory (the files are memory-mapped).

  Args:
    root: the data root holding the synthetic subject.
    subject: its `rdmjax.data.algonauts.Subject` (for the ROI masks).
    roi: an ROI name, as `Subject.responses`.
    split: 'train' or 'test'.
    rows: the image rows to read (default all).

  Returns:
    The array, or None when the subject has no noiseless responses (real
    data, or a synthetic subject written without them).
  """
  folder = extras_dir(root, subject.name) / 'noiseless'
  if not all((folder / f'{h}_{split}.npy').is_file() for h in HEMIS):
    return None
  parts = [np.load(folder / f'{h}_{split}.npy', mmap_mode='r') for h in HEMIS]
  # Aligned, as the reader's responses (a CPU device shares it), and read
  # in row chunks (never the whole file resident).
  return read_columns(parts, subject.roi_mask(roi), rows)


def read_extras(
  root: str | os.PathLike, subject: str = 'subj01'
) -> dict[str, np.ndarray]:
  """A synthetic subject's noiseless responses and latents.

  Returns:
    {lh,rh}_{train,test}: [n, v] f32 read-only memory maps of the noiseless
    responses; latents_train, latents_test: [n, 21] f32; latent_names: [21]
    str; n_reps_train: [n_train] int, the repeats averaged per image.
  """
  folder = extras_dir(root, subject) / 'noiseless'
  out = {
    f'{h}_{s}': np.load(folder / f'{h}_{s}.npy', mmap_mode='r')
    for h in HEMIS
    for s in ('train', 'test')
  }
  with np.load(folder / 'latents.npz') as f:
    out.update({k: f[k] for k in f.files})
  return out


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


def _rng(seed: int, *key: int) -> np.random.Generator:
  """The generator of one random stream: the seed and a key (see _IDS...)."""
  return np.random.default_rng(
    np.random.SeedSequence([seed, FORMAT_VERSION], spawn_key=key)
  )


def _chunks(stop: int, block: int, chunk: int, start: int = 0):
  """Slices of whole blocks (the last one cut at stop), each
  max(1, chunk // block) blocks long, covering start..stop (start: a whole
  number of blocks)."""
  step = max(1, chunk // block) * block
  for i in range(start, stop, step):
    yield slice(i, min(i + step, stop))


def _cpus() -> int:
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))  # the CPUs this process may use
  return os.cpu_count() or 1


def _vertex_workers(n_images: int) -> int:
  """VERTEX_WORKERS, or one thread per CPU within VERTEX_MEMORY."""
  if VERTEX_WORKERS:
    return VERTEX_WORKERS
  # A task's bytes per image: its chunk's two f32 outputs and a block's work
  # arrays (measured: 195 MB for 256 vertices of 10,000 images, 3 repeats).
  task = n_images * (2 * 4 * VERTEX_CHUNK + 80 * VERTEX_BLOCK)
  return max(1, min(_cpus(), VERTEX_MEMORY // task))


def _in_threads(fn, items, workers: int, done=None) -> None:
  """Runs fn(item) for every item in `workers` threads, and done(item,
  result) in this thread as each ends; at most workers + 1 are submitted
  and not yet done (so at most that many results wait). An error (or ^C)
  cancels what has not started and is raised."""
  todo = iter(items)
  with ThreadPoolExecutor(workers) as pool:
    running = {
      pool.submit(fn, x): x for x in itertools.islice(todo, workers + 1)
    }
    try:
      while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in finished:
          x = running.pop(f)
          result = f.result()
          if done is not None:
            done(x, result)
          for nxt in itertools.islice(todo, 1):
            running[pool.submit(fn, nxt)] = nxt
    except BaseException:
      for f in running:
        f.cancel()
      raise


def _images(p: dict, subj: Path, ids, lat: dict, progress: bool, pre=None):
  """Renders, saves and filters the images, one IMAGE_BLOCK per task.

  pre: [n, s, s, 3] uint8 images rendered already (a population's pool),
  saved and filtered instead of rendered.

  Each of IMAGE_WORKERS threads renders a block (its own generator),
  writes its PNGs and filters it: numpy's loops, the noise generator,
  zlib and file writes release the GIL, so the threads run in parallel,
  each holding one block's images and their float work arrays.

  Returns:
    chan: [n, 15, POOL_RES**2] f32, `filter_channels` of every image.
  """
  n, n_train, size = ids.size, p['n_train'], p['image_size']
  folders = []
  for stem in ('training_split/training', 'test_split/test'):
    folders.append(subj / f'{stem}_images')
    folders[-1].mkdir(parents=True)

  def block(b: slice) -> None:
    if pre is not None:
      images = pre[b]
    else:
      rng = _rng(p['seed'], _RENDER, b.start // IMAGE_BLOCK)
      images = render({k: x[b] for k, x in lat.items()}, size, rng)
    for i, image in zip(range(b.start, b.stop), images):
      split, j = ('train', i) if i < n_train else ('test', i - n_train)
      name = f'{split}-{j + 1:04d}_nsd-{ids[i]:05d}.png'
      (folders[split == 'test'] / name).write_bytes(png_bytes(image))
    chan[b] = filter_channels(images)

  chan = np.empty((n, 15, POOL_RES**2), np.float32)
  with tqdm(total=n, desc='images', disable=not progress) as bar:
    _in_threads(
      block,
      _chunks(n, IMAGE_BLOCK, IMAGE_BLOCK),
      IMAGE_WORKERS or _cpus(),
      lambda b, _: bar.update(b.stop - b.start),
    )
  return chan


def _new_npy(path: Path, shape) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  f = np.lib.format.open_memmap(path, 'w+', np.float32, shape)
  del f


def _write_cols(path: Path, cols: slice, x: np.ndarray) -> None:
  """Writes x into columns `cols` of the [rows, v] `.npy` file at path.

  Mapped only meanwhile: once unmapped, its written pages leave this
  process's resident set (they stay in the page cache until written back).
  """
  f = np.lib.format.open_memmap(path, 'r+')
  f[:, cols] = x
  del f


def _vertex_block(p, k, prm, feats, n_reps, b: slice):
  """(measured, noiseless) [n, len(b)] f32 of one VERTEX_BLOCK b of
  hemisphere k: its own noise stream, and products and reductions of one
  fixed shape (a BLAS kernel is chosen by shape), whatever the chunk."""
  n, n_rep = n_reps.size, p['n_repeats']
  sig = hemi_signal(feats, prm, b)  # first: its work arrays are the largest
  rng = _rng(p['seed'], _NOISE, k, b.start // VERTEX_BLOCK)
  noise = rng.standard_normal((n, n_rep, b.stop - b.start), np.float32)
  shared = prm['factors'] @ prm['load'][:, b]
  return measure(sig, prm['ncsnr'][b], n_reps, noise, shared)


def _responses(p, k, prm, feats, n_reps, subj: Path, extras: Path) -> None:
  """Writes one hemisphere's measured and noiseless responses: computed per
  VERTEX_BLOCK, a VERTEX_CHUNK per task in `_vertex_workers` threads, and
  written per VERTEX_CHUNK by this one."""
  hemi, n_train = HEMIS[k], p['n_train']
  n, v = n_reps.size, prm['prf'].size
  files = {
    'saved': (
      subj / 'training_split/training_fmri' / f'{hemi}_training_fmri.npy',
      subj / 'test_split/test_fmri' / f'{hemi}_test_fmri.npy',
    ),
    'clean': (
      extras / 'noiseless' / f'{hemi}_train.npy',
      extras / 'noiseless' / f'{hemi}_test.npy',
    ),
  }
  for train, test in files.values():
    _new_npy(train, (n_train, v))
    _new_npy(test, (n - n_train, v))

  def compute(cols: slice) -> dict:
    out = {
      key: np.empty((n, cols.stop - cols.start), np.float32) for key in files
    }
    for b in _chunks(cols.stop, VERTEX_BLOCK, VERTEX_BLOCK, cols.start):
      got = _vertex_block(p, k, prm, feats, n_reps, b)
      for key, x in zip(('saved', 'clean'), got):
        out[key][:, b.start - cols.start : b.stop - cols.start] = x
    return out

  def write(cols: slice, out: dict) -> None:  # while others compute
    for key, (train, test) in files.items():
      _write_cols(train, cols, out[key][:n_train])
      _write_cols(test, cols, out[key][n_train:])

  _in_threads(
    compute,
    _chunks(v, VERTEX_BLOCK, VERTEX_CHUNK),
    _vertex_workers(n),
    write,
  )


def _generate(
  p: dict, subj: Path, extras: Path, progress: bool, pool=None
) -> None:
  """Writes a subject into subj/ and its extras into extras/ (not params).

  pool: a population's images (`synthetic_population.population_pool`) and
  this subject's rows of it ('rows', train then test): the images, their
  latents, latent features' model and embeddings come from the pool (the
  same image, the same everything, in every subject); ROIs, vertices,
  repeats and noise from the subject's own seed."""
  n_train, n_test = p['n_train'], p['n_test']
  n_rep, seed = p['n_repeats'], p['seed']
  n = n_train + n_test
  if pool is None:
    ids = _rng(seed, _IDS).choice(N_NSD, n, replace=False)
    ids = np.concatenate([np.sort(ids[:n_train]), np.sort(ids[n_train:])])
    lat = draw_latents(_rng(seed, _LATENTS), n)
    chan = _images(p, subj, ids, lat, progress)
    z = standardise(latent_matrix(lat))
    maps = random_maps(_rng(seed, _MAPS), z.shape[1])
  else:
    rows = pool['rows']
    ids, lat = pool['ids'][rows], {k: v[rows] for k, v in pool['lat'].items()}
    chan = _images(p, subj, ids, lat, progress, pool['images'][rows])
    z, maps = pool['z'][rows], pool['maps']
  feats = dict(h=latent_features(z, maps), category=lat['category'], chan=chan)
  n_reps = np.concatenate(
    [_rng(seed, _REPS).integers(1, n_rep + 1, n_train), np.full(n_test, n_rep)]
  )
  labels = {}
  extras.mkdir(parents=True)
  for k, hemi in enumerate(HEMIS):
    rng = _rng(seed, _HEMI, k)
    labels[hemi] = assign_rois(p[f'n_vertices_{hemi}'], rng)
    prm = hemi_params(labels[hemi], maps, hemi, n * n_rep, rng)
    snr = prm['ncsnr']
    nc = snr**2 / (snr**2 + np.mean(1 / n_reps[n_train:]))
    d = subj / 'test_split' / 'noise_ceiling'
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / f'{hemi}_noise_ceiling.npy', nc.astype(np.float64))
    _responses(p, k, prm, feats, n_reps, subj, extras)
    del prm
  _write_rois(subj / 'roi_masks', labels, _rng(seed, _ROIS))
  if pool is None:
    emb = synthetic_embeddings(lat, _rng(seed, _EMBED))
  else:
    emb = pool['emb'][pool['rows']]
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
    writer=True,  # whoever writes the subject (each host's own, if remote)
  )
  lm = latent_matrix(lat)
  np.savez(
    extras / 'noiseless' / 'latents.npz',
    latents_train=lm[:n_train],
    latents_test=lm[n_train:],
    latent_names=np.asarray(LATENT_NAMES),
    n_reps_train=n_reps[:n_train],
  )


def _remove_stale_tmp(root: Path, subject: str) -> list[Path]:
  """Deletes the temporary folders of writers that died (kill -9 mid-
  write): `.subjNN.synthetic-tmp-PID` whose PID is not running."""
  gone = []
  for d in root.glob(f'.{subject}.synthetic-tmp-*'):
    pid = d.name.rsplit('-', 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
      continue
    try:
      os.kill(int(pid), 0)  # running: another writer, leave it
    except ProcessLookupError:
      shutil.rmtree(d, ignore_errors=True)
      gone.append(d)
    except PermissionError:
      pass
  return gone


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
  _pool: dict | None = None,
) -> Path:
  """Writes a synthetic subject in the Algonauts layout (see module doc).

  (`_pool`: used by `synthetic_population.write_population`.)

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
  _remove_stale_tmp(root, subject)
  try:
    _generate(p, tmp / 'subject', tmp / 'extras', progress, _pool)
    (extras / 'params.json').unlink(missing_ok=True)
    shutil.rmtree(extras, ignore_errors=True)
    extras.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp / 'extras', extras)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp / 'subject', target)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  marker = extras / 'params.json'
  if _pool is not None:
    p = dict(p, population=_pool['describe'])
  write_marker(marker, p)
  return target


def write_marker(path: Path, params: dict) -> None:
  """Writes the parameters a subject or population was made with, through
  a temporary name (written last: its presence means complete)."""
  tmp = path.with_suffix('.tmp')
  tmp.write_text(json.dumps(params, indent=1, sort_keys=True))
  os.replace(tmp, path)


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
    if v.kind == v.KEYWORD_ONLY and k != 'progress' and not k.startswith('_')
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
