"""The synthetic subject: exact Algonauts layout, determinism, known ceiling."""

import hashlib
import json
import re

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from rdmjax.data import (
  embeddings,
  synthetic,
  synthetic_images,
  synthetic_model,
)
from rdmjax.errors import InputError

TINY = dict(
  n_train=120, n_test=30, n_vertices_lh=300, n_vertices_rh=320, image_size=64
)
# The reference's names and codes (algonauts2023-layout.md, section 3.3).
NAMES = {
  'prf-visualrois': 'V1v V1d V2v V2d V3v V3d hV4',
  'floc-bodies': 'EBA FBA-1 FBA-2 mTL-bodies',
  'floc-faces': 'OFA FFA-1 FFA-2 mTL-faces aTL-faces',
  'floc-places': 'OPA PPA RSC',
  'floc-words': 'OWFA VWFA-1 VWFA-2 mfs-words mTL-words',
  'streams': 'early midventral midlateral midparietal ventral lateral parietal',
}
HEMIS = ('lh', 'rh')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp('synth')
  synthetic.write_subject(root, progress=False, **TINY)
  return root


def _fmri(root, split):
  stem = 'training_split/training' if split == 'train' else 'test_split/test'
  name = 'training' if split == 'train' else 'test'
  return [
    np.load(root / 'subj01' / f'{stem}_fmri' / f'{h}_{name}_fmri.npy')
    for h in HEMIS
  ]


def _labels(root, cls):
  return np.concatenate(
    [
      np.load(root / 'subj01/roi_masks' / f'{h}.{cls}_challenge_space.npy')
      for h in HEMIS
    ]
  )


def _rdm(x):
  return pdist(np.asarray(x, np.float64), 'correlation')


def test_roi_masks_exact_files_names_codes(root):
  folder = root / 'subj01' / 'roi_masks'
  expect = {f'mapping_{c}.npy' for c in NAMES}
  expect |= {
    f'{h}.{c}_{s}_space.npy'
    for h in HEMIS
    for c in NAMES
    for s in ('challenge', 'fsaverage')
  }
  expect |= {f'{h}.all-vertices_fsaverage_space.npy' for h in HEMIS}
  assert len(expect) == 32
  assert {p.name for p in folder.iterdir()} == expect
  n_names = 0
  for cls, names in NAMES.items():
    mapping = np.load(folder / f'mapping_{cls}.npy', allow_pickle=True).item()
    want = {0: 'Unknown', **dict(enumerate(names.split(), 1))}
    assert mapping == want and all(type(k) is int for k in mapping)
    n_names += len(mapping) - 1
  assert n_names == 31
  for h, v in zip(HEMIS, (TINY['n_vertices_lh'], TINY['n_vertices_rh'])):
    allv = np.load(folder / f'{h}.all-vertices_fsaverage_space.npy')
    assert allv.dtype == np.int64 and allv.shape == (163842,)
    assert set(np.unique(allv)) == {0, 1} and np.count_nonzero(allv) == v
    where = np.flatnonzero(allv)  # ascending: challenge column order
    for cls, names in NAMES.items():
      ch = np.load(folder / f'{h}.{cls}_challenge_space.npy')
      fs = np.load(folder / f'{h}.{cls}_fsaverage_space.npy')
      assert ch.dtype == fs.dtype == np.int64
      assert ch.shape == (v,) and fs.shape == (163842,)
      np.testing.assert_array_equal(fs[where], ch)
      assert not fs[allv == 0].any()
      # Every ROI of the class has vertices in this hemisphere.
      counts = np.bincount(ch, minlength=len(names.split()) + 1)
      assert counts.size == len(names.split()) + 1 and (counts[1:] > 0).all()
  # Classes overlap as in reality: V1-V3 are 'early' in streams.
  prf, streams = _labels(root, 'prf-visualrois'), _labels(root, 'streams')
  assert (streams[(prf >= 1) & (prf <= 6)] == 1).all()


def test_default_size_rois_are_large_enough():
  for v in (1900, 2050):
    for seed in range(3):
      lab = synthetic_model.assign_rois(v, np.random.default_rng(seed))
      counts = np.bincount(lab['prf-visualrois'], minlength=8)
      assert counts[1] >= 40 and counts[2] >= 40 and (counts[1:] >= 20).all()
      for cls, names in NAMES.items():
        assert set(np.unique(lab[cls])) >= set(range(1, len(names.split()) + 1))


def test_fmri_images_and_ids(root):
  subj = root / 'subj01'
  ids = {}
  for split, n in (('train', TINY['n_train']), ('test', TINY['n_test'])):
    lh, rh = _fmri(root, split)
    assert lh.dtype == rh.dtype == np.float32
    assert lh.shape == (n, 300) and rh.shape == (n, 320)
    assert np.isfinite(lh).all() and (lh.std(0) > 0).all()
    stem = 'training_split/training' if split == 'train' else 'test_split/test'
    files = sorted((subj / f'{stem}_images').iterdir())
    pattern = re.compile(rf'^{split}-(\d{{4}})_nsd-(\d{{5}})\.png$')
    matches = [pattern.match(f.name) for f in files]
    assert all(matches) and len(files) == n
    assert [int(m[1]) for m in matches] == list(range(1, n + 1))
    ids[split] = np.array([int(m[2]) for m in matches])
    assert (np.diff(ids[split]) > 0).all() and ids[split].max() < 73000
    for f in files[:3]:
      img = Image.open(f)
      assert img.format == 'PNG' and img.mode == 'RGB'
      assert img.size == (TINY['image_size'],) * 2
  assert not set(ids['train']) & set(ids['test'])
  for h in HEMIS:
    nc = np.load(subj / 'test_split/noise_ceiling' / f'{h}_noise_ceiling.npy')
    assert nc.dtype == np.float64 and nc.ndim == 1
    assert (nc >= 0).all() and (nc < 1).all()
  emb, meta = embeddings.read(
    synthetic.extras_dir(root) / 'embeddings.npz', 'test', ids['test']
  )
  assert emb.shape == (TINY['n_test'], synthetic_model.EMBED_DIM)
  assert meta['model'] == 'synthetic' and meta['layer'] == 'latents-partial'


@pytest.mark.parametrize('size', [33, 64, 125])
def test_render_blends_only_where_shapes_cover(monkeypatch, size):
  """Each shape blended only inside its `_shape_box` gives the pixels of
  blending it over the whole image (its alpha is 0 elsewhere), objects cut
  by the image's edges included."""
  lat = synthetic_images.draw_latents(np.random.default_rng(size), 48)
  lat['x'][:8] = np.linspace(-0.1, 1.1, 8)  # partly or wholly off the image
  got = synthetic_images.render(lat, size, np.random.default_rng(1))
  monkeypatch.setattr(
    synthetic_images, '_shape_box', lambda *a: (0, a[-1], 0, a[-1])
  )
  want = synthetic_images.render(lat, size, np.random.default_rng(1))
  np.testing.assert_array_equal(got, want)
  assert got.shape == (48, size, size, 3) and got.std() > 10


@pytest.mark.parametrize('shape', [(1, 1), (3, 7), (64, 64)])
def test_png_bytes_decode_to_the_pixels(shape):
  import io

  image = np.random.default_rng(0).integers(0, 256, (*shape, 3), np.uint8)
  data = synthetic_images.png_bytes(image)
  Image.open(io.BytesIO(data)).verify()  # chunk CRCs
  with Image.open(io.BytesIO(data)) as img:
    assert img.format == 'PNG' and img.mode == 'RGB'
    np.testing.assert_array_equal(np.asarray(img), image)


def test_vertex_workers_fit_the_memory(monkeypatch):
  monkeypatch.setattr(synthetic, '_cpus', lambda: 64)
  assert synthetic._vertex_workers(700) == 64
  nsd = synthetic._vertex_workers(10_000)
  assert 2 <= nsd < 16  # ~280 MB a task at 10,000 images, within 2 GiB
  monkeypatch.setattr(synthetic, 'VERTEX_WORKERS', 3)
  assert synthetic._vertex_workers(10_000) == 3


def test_a_failing_task_stops_the_rest():
  started = []

  def fn(x):
    started.append(x)
    if x == 2:
      raise ValueError(x)

  with pytest.raises(ValueError):
    synthetic._in_threads(fn, range(100), 2)
  assert len(started) < 10


def test_noise_ceiling_file_matches_test_responses(root):
  # With all repeats averaged, corr(saved, noiseless) over images is
  # sqrt(noise ceiling) in expectation (the ceiling's definition).
  noiseless = synthetic.read_extras(root)
  r, nc = [], []
  for h, noisy in zip(HEMIS, _fmri(root, 'test')):
    clean = noiseless[f'{h}_test']
    r += [pearsonr(noisy[:, j], clean[:, j])[0] for j in range(clean.shape[1])]
    nc.append(
      np.load(root / f'subj01/test_split/noise_ceiling/{h}_noise_ceiling.npy')
    )
  r, nc = np.array(r), np.concatenate(nc)
  assert abs(r.mean() - np.sqrt(nc).mean()) < 0.05
  assert pearsonr(r, np.sqrt(nc))[0] > 0.3


def _all_arrays(root):
  """Hashes of every file's bytes except PNGs, plus the decoded pixels."""
  out = {}
  for f in sorted(p for p in root.rglob('*') if p.is_file()):
    key = str(f.relative_to(root))
    if f.suffix == '.png':
      out[key] = hashlib.sha256(np.asarray(Image.open(f)).tobytes()).hexdigest()
    elif f.suffix == '.npz':
      with np.load(f) as z:
        out[key] = {k: hashlib.sha256(z[k].tobytes()).hexdigest() for k in z}
    elif f.suffix == '.npy':
      a = np.load(f, allow_pickle=True)
      out[key] = hashlib.sha256(
        repr(a).encode() if a.dtype == object else a.tobytes()
      ).hexdigest()
    else:
      out[key] = f.read_text()
  return out


def test_same_seed_same_arrays_other_seed_differs(root, tmp_path):
  again = synthetic.write_subject(tmp_path / 'a', progress=False, **TINY)
  assert again == tmp_path / 'a' / 'subj01'
  assert _all_arrays(tmp_path / 'a') == _all_arrays(root)
  synthetic.write_subject(tmp_path / 'b', progress=False, seed=1, **TINY)
  a, b = _all_arrays(root), _all_arrays(tmp_path / 'b')
  assert a.keys() != b.keys() or a != b
  fmri = 'subj01/training_split/training_fmri/lh_training_fmri.npy'
  assert a[fmri] != b[fmri]


@pytest.mark.parametrize('chunk', ['one block', 'all at once'])
def test_chunk_sizes_do_not_change_the_files(
  root, tmp_path, monkeypatch, chunk
):
  """Random streams and computations are per fixed block, so chunks of one
  block (TINY: 2 + 2 vertex chunks, not 1 + 1) or of everything, and one
  thread or more threads than tasks finishing in any order, write the same
  bytes (with the products shaped by the chunks, OpenBLAS's Zen
  and Haswell kernels wrote other bits). Bitwise on one machine only:
  another machine's BLAS kernel changes the last bits whatever the chunks
  (OPENBLAS_CORETYPE=Zen vs SkylakeX: up to 8e-7 in responses of sd 1)."""
  assert TINY['n_vertices_lh'] > synthetic.VERTEX_BLOCK
  if chunk == 'one block':
    monkeypatch.setattr(synthetic, 'IMAGE_WORKERS', 1)
    monkeypatch.setattr(synthetic, 'VERTEX_CHUNK', 1)  # rounded up to a block
    monkeypatch.setattr(synthetic, 'VERTEX_WORKERS', 3)
  else:
    monkeypatch.setattr(synthetic, 'IMAGE_WORKERS', 7)
    monkeypatch.setattr(synthetic, 'VERTEX_CHUNK', 10**6)
    monkeypatch.setattr(synthetic, 'VERTEX_WORKERS', 1)
  synthetic.write_subject(tmp_path, progress=False, **TINY)
  assert _all_arrays(tmp_path) == _all_arrays(root)


def test_memory_is_bounded_by_the_chunks(tmp_path, monkeypatch):
  import tracemalloc

  from rdmjax.files import is_writer

  is_writer()  # its first call imports (tens of MB traced)
  for name, size in (('IMAGE', 16), ('VERTEX', 64)):
    monkeypatch.setattr(synthetic, f'{name}_BLOCK', size)
  monkeypatch.setattr(synthetic, 'VERTEX_CHUNK', 64)
  # One task in the works per thread: the bound, whatever the host's CPUs.
  monkeypatch.setattr(synthetic, 'IMAGE_WORKERS', 2)
  monkeypatch.setattr(synthetic, 'VERTEX_WORKERS', 2)
  small = dict(
    n_train=300, n_test=100, n_vertices_lh=250, n_vertices_rh=250, image_size=64
  )
  large = dict(small, n_vertices_lh=2000, n_vertices_rh=2000, image_size=128)
  peak, data = [], []
  for i, kw in enumerate((small, large)):
    tracemalloc.start()
    try:
      synthetic.write_subject(tmp_path / str(i), progress=False, **kw)
      peak.append(tracemalloc.get_traced_memory()[1])
    finally:
      tracemalloc.stop()
    n, v = kw['n_train'] + kw['n_test'], 2 * kw['n_vertices_lh']
    # Measured and noiseless f32 responses, and the images' pixels.
    data.append(2 * n * v * 4 + n * kw['image_size'] ** 2 * 3)
  # Measured: 14.0 and 12.7 MB, for data of 6.5 and 32.5 MB (the writer
  # that held it all: 117 and 177 MB).
  assert peak[1] < 1.5 * peak[0] + 1e6, peak
  assert peak[1] - peak[0] < 0.25 * (data[1] - data[0]), (peak, data)


def _masks(root):
  prf = _labels(root, 'prf-visualrois')
  return {
    'all': np.ones(prf.size, bool),
    'V1': (prf == 1) | (prf == 2),
    'floc-faces': _labels(root, 'floc-faces') > 0,
  }


@pytest.mark.parametrize('split', ['test', 'train'])
def test_ceiling_is_measured_and_informative(root, split):
  noiseless = synthetic.read_extras(root)
  clean = np.concatenate([noiseless[f'{h}_{split}'] for h in HEMIS], 1)
  noisy = np.concatenate(_fmri(root, split), 1)
  assert clean.dtype == np.float32 and clean.shape == noisy.shape
  emb, meta = embeddings.read(synthetic.extras_dir(root) / 'embeddings.npz')
  emb_rdm = _rdm(emb[meta['splits'] == split])
  masks = _masks(root)
  for roi in ('all', 'V1'):
    noisy_rdm = _rdm(noisy[:, masks[roi]])
    ceiling = spearmanr(_rdm(clean[:, masks[roi]]), noisy_rdm)[0]
    # Tiny subject, seeds 0-4: test all 0.63-0.74, V1 0.66-0.76; train
    # all 0.50-0.56, V1 0.56-0.60.
    assert 0.3 < ceiling < 0.95, (roi, ceiling)
    if roi == 'all':
      # Embeddings see the task latents through a noisy nonlinear map, not
      # the nuisances: test 0.30-0.41, train 0.22-0.28 over seeds 0-4
      # (ceiling - 0.2: 0.43-0.54 test, 0.30-0.36 train).
      zero_shot = spearmanr(emb_rdm, noisy_rdm)[0]
      assert 0.05 < zero_shot < ceiling - 0.2, zero_shot


def test_v1_follows_pixels_more_than_face_rois(root):
  files = sorted((root / 'subj01/training_split/training_images').iterdir())
  images = np.stack([np.asarray(Image.open(f), np.float64) for f in files])
  k = TINY['image_size'] // 8  # 8 x 8 RGB block means: coarse pixel space
  blocks = images.reshape(len(files), 8, k, 8, k, 3).mean((2, 4))
  pixel_rdm = _rdm(blocks.reshape(len(files), -1))
  noisy = np.concatenate(_fmri(root, 'train'), 1)
  masks = _masks(root)
  rho = {
    roi: spearmanr(pixel_rdm, _rdm(noisy[:, masks[roi]]))[0]
    for roi in ('V1', 'floc-faces')
  }
  # Measured over seeds 0-4: V1 0.15-0.21, floc-faces 0.02-0.04.
  assert rho['V1'] > rho['floc-faces'] + 0.08, rho
  # And face ROIs follow the category more than V1 does.
  cat = synthetic.read_extras(root)['latents_train']
  cat_rdm = pdist(cat[:, : len(synthetic_images.CATEGORIES)], 'hamming')
  rho_cat = {
    roi: spearmanr(cat_rdm, _rdm(noisy[:, masks[roi]]))[0]
    for roi in ('V1', 'floc-faces')
  }
  # Measured over seeds 0-4: floc-faces 0.21-0.23, V1 0.05-0.09.
  assert rho_cat['floc-faces'] > rho_cat['V1'] + 0.08, rho_cat


def test_ensure_subject_reuses_rewrites_and_refuses(tmp_path):
  kw = dict(TINY, n_train=20, n_test=5)
  subj = synthetic.ensure_subject(tmp_path, progress=False, **kw)
  marker = synthetic.extras_dir(tmp_path) / 'params.json'
  stamp = marker.stat().st_mtime_ns
  assert synthetic.ensure_subject(tmp_path, progress=False, **kw) == subj
  assert marker.stat().st_mtime_ns == stamp  # reused, not rewritten
  assert json.loads(marker.read_text())['n_train'] == 20
  synthetic.ensure_subject(tmp_path, progress=False, **dict(kw, n_train=25))
  assert len(list((subj / 'training_split/training_images').iterdir())) == 25
  # No marker = an interrupted write: written again.
  marker.unlink()
  synthetic.ensure_subject(tmp_path, progress=False, **kw)
  assert marker.is_file()
  assert not [p for p in tmp_path.iterdir() if 'tmp' in p.name]
  # A folder not written here is never replaced.
  (tmp_path / 'other' / 'subj01').mkdir(parents=True)
  with pytest.raises(InputError, match='not a synthetic subject'):
    synthetic.ensure_subject(tmp_path / 'other', progress=False, **kw)
  with pytest.raises(InputError, match='n_vertices_lh'):
    synthetic.write_subject(tmp_path, progress=False, n_vertices_lh=10)
  with pytest.raises(InputError, match='subj01'):
    synthetic.write_subject(tmp_path, 'subject1', progress=False)


def test_the_reader_reads_it(root):
  algonauts = pytest.importorskip('rdmjax.data.algonauts')
  subj = algonauts.load_subject(root, 'subj01')
  assert subj.responses('all', 'train').shape == (120, 620)
  assert subj.responses('V1', 'test').shape[0] == 30
  counts = subj.vertex_counts('V1')
  assert counts['lh'] > 0 and counts['rh'] > 0
  np.testing.assert_array_equal(
    subj.responses('all', 'test'), np.concatenate(_fmri(root, 'test'), 1)
  )
  extras = synthetic.read_extras(root)
  lh, rh = subj.roi_mask('V1')
  np.testing.assert_array_equal(
    synthetic.noiseless(root, subj, 'V1', 'test'),
    np.concatenate([extras['lh_test'][:, lh], extras['rh_test'][:, rh]], 1),
  )
  assert list(extras['latent_names']) == list(synthetic_images.LATENT_NAMES)
  assert extras['n_reps_train'].shape == (TINY['n_train'],)
  for name in (n for names in NAMES.values() for n in names.split()):
    assert sum(subj.vertex_counts(name).values()) > 0, name
  embeddings.read(
    synthetic.extras_dir(root) / 'embeddings.npz', 'train', subj.nsd_ids()
  )


def test_a_killed_writers_temporary_folder_is_removed(tmp_path):
  """kill -9 mid-write leaves .subj01.synthetic-tmp-PID: the next writer
  removes it when that PID is gone, and leaves a running writer's."""
  import os
  import subprocess

  from rdmjax.data import synthetic

  dead = subprocess.Popen(['true'])
  dead.wait()  # a PID that no longer runs
  stale = tmp_path / f'.subj01.synthetic-tmp-{dead.pid}'
  live = tmp_path / f'.subj01.synthetic-tmp-{os.getppid()}'
  for d in (stale, live):
    (d / 'subject').mkdir(parents=True)
  assert synthetic._remove_stale_tmp(tmp_path, 'subj01') == [stale]
  assert not stale.exists() and live.exists()
