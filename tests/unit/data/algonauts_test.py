"""The Algonauts reader on a tiny synthetic subject, and every bad input."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from rdmjax.data import algonauts, images, synthetic
from rdmjax.errors import InputError

TINY = dict(
  n_train=40,
  n_test=10,
  n_vertices_lh=300,
  n_vertices_rh=320,
  image_size=32,
  progress=False,
)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp('algonauts')
  synthetic.write_subject(root, 'subj01', **TINY)
  return root


def test_reads_shapes_ids_and_optional_files(root):
  s = algonauts.load_subject(root, 'subj01')
  assert s.n_images('train') == 40 and s.n_images('test') == 10
  assert s.n_vertices == {'lh': 300, 'rh': 320}
  assert s.fmri['train'][0].dtype == np.float32
  assert s.has_fmri('test') and s.noise_ceiling is not None
  names = [p.name for p in s.image_paths('train')]
  assert names == sorted(names)
  assert all(
    f'_nsd-{i:05d}.png' in n for n, i in zip(names, s.nsd_ids('train'))
  )
  assert np.all(np.diff(s.nsd_ids('train')) > 0)


def test_split_layout_reads_the_same(root, tmp_path):
  base = root / 'subj01'
  (tmp_path / 'train_data' / 'subj01').mkdir(parents=True)
  (tmp_path / 'test_data' / 'subj01').mkdir(parents=True)
  for d in ('training_split', 'roi_masks'):
    shutil.copytree(base / d, tmp_path / 'train_data' / 'subj01' / d)
  shutil.copytree(
    base / 'test_split', tmp_path / 'test_data' / 'subj01' / 'test_split'
  )
  a = algonauts.load_subject(root, 'subj01')
  b = algonauts.load_subject(tmp_path, 'subj01')
  for split in ('train', 'test'):
    np.testing.assert_array_equal(
      a.responses('all', split), b.responses('all', split)
    )
    np.testing.assert_array_equal(a.nsd_ids(split), b.nsd_ids(split))


def test_roi_selection_left_first_and_unions(root):
  s = algonauts.load_subject(root, 'subj01')
  d = root / 'subj01'
  lh = np.load(d / 'training_split/training_fmri/lh_training_fmri.npy')
  rh = np.load(d / 'training_split/training_fmri/rh_training_fmri.npy')
  lab = {
    h: np.load(d / f'roi_masks/{h}.prf-visualrois_challenge_space.npy')
    for h in ('lh', 'rh')
  }
  mapping = np.load(
    d / 'roi_masks/mapping_prf-visualrois.npy', allow_pickle=True
  ).item()
  code = {v: k for k, v in mapping.items()}
  want = np.concatenate(
    [
      lh[:, np.isin(lab['lh'], [code['V1v'], code['V1d']])],
      rh[:, np.isin(lab['rh'], [code['V1v'], code['V1d']])],
    ],
    axis=1,
  )
  np.testing.assert_array_equal(s.responses('V1', 'train'), want)
  v1v, v1d = s.vertex_counts('V1v'), s.vertex_counts('V1d')
  assert s.vertex_counts('V1') == {h: v1v[h] + v1d[h] for h in ('lh', 'rh')}
  assert s.responses('all').shape == (40, 620)
  faces = s.vertex_counts('floc-faces')
  parts = [
    s.vertex_counts(n)
    for n in ('OFA', 'FFA-1', 'FFA-2', 'mTL-faces', 'aTL-faces')
  ]
  assert faces['lh'] == sum(p['lh'] for p in parts)
  assert s.vertex_counts('FFA')['lh'] == (
    s.vertex_counts('FFA-1')['lh'] + s.vertex_counts('FFA-2')['lh']
  )


def test_unknown_roi_lists_close_matches(root):
  s = algonauts.load_subject(root, 'subj01')
  with pytest.raises(InputError, match="unknown ROI 'V1x'.*V1") as e:
    s.roi_mask('V1x')
  assert '\n' not in str(e.value)


def test_empty_roi_fails(copy):
  for h in ('lh', 'rh'):
    f = copy / f'subj01/roi_masks/{h}.floc-faces_challenge_space.npy'
    a = np.load(f)
    a[a == 2] = 0  # FFA-1 gone in both hemispheres
    np.save(f, a)
  s = algonauts.load_subject(copy, 'subj01')
  with pytest.raises(InputError, match='no vertex'):
    s.roi_mask('FFA-1')


def test_standardizer_equals_sklearn(root):
  s = algonauts.load_subject(root, 'subj01')
  x = s.responses('all', 'train')
  rows = np.arange(0, 40, 2)
  x[:, 5] = 3.0  # a constant vertex: sklearn keeps scale 1
  want = StandardScaler().fit(x[rows].astype(np.float64)).transform(x)
  got = algonauts.standardize(x, rows)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Wider than one column block (2048): every block, the last one partial.
  wide = np.random.default_rng(0).normal(3, 2, (30, 5000)).astype(np.float32)
  want = StandardScaler().fit(wide[rows[:10]].astype(np.float64))
  got = algonauts.standardize(wide, rows[:10])
  np.testing.assert_allclose(got, want.transform(wide), rtol=1e-5, atol=1e-5)


def test_images_rgb_and_gray(root):
  s = algonauts.load_subject(root, 'subj01')
  rgb = images.load_images(s.image_paths('train')[:3], 'rgb', size=48)
  assert rgb.shape == (3, 48, 48, 3) and rgb.dtype == np.uint8
  gray = images.load_images(s.image_paths('test')[:3], 'gray', size=128)
  assert gray.shape == (3, 128, 128) and gray.dtype == np.float32
  np.testing.assert_allclose(gray.min((1, 2)), 0.0)
  np.testing.assert_allclose(gray.max((1, 2)), 1.0)


def _damage_missing_file(d):
  os.remove(d / 'subj01/roi_masks/rh.floc-words_challenge_space.npy')


def _damage_rows(d):
  f = d / 'subj01/training_split/training_fmri/lh_training_fmri.npy'
  np.save(f, np.load(f)[:-1])


def _damage_hemi_rows(d):
  # Drop one image and the lh row only: lh matches, rh does not.
  imgs = sorted((d / 'subj01/training_split/training_images').iterdir())
  os.remove(imgs[-1])
  f = d / 'subj01/training_split/training_fmri/lh_training_fmri.npy'
  np.save(f, np.load(f)[:-1])


def _damage_mask(d):
  f = d / 'subj01/roi_masks/lh.streams_challenge_space.npy'
  np.save(f, np.load(f)[:-3])


def _damage_nan(d):
  f = d / 'subj01/training_split/training_fmri/rh_training_fmri.npy'
  a = np.load(f)
  a[3, 7] = np.nan
  np.save(f, a)


def _damage_name(d):
  folder = d / 'subj01/training_split/training_images'
  first = sorted(folder.iterdir())[0]
  first.rename(folder / 'train-0001_nsd-13.png')


def _damage_png(d):
  folder = d / 'subj01/test_split/test_images'
  sorted(folder.iterdir())[2].write_bytes(b'not a png at all')


DAMAGES = {
  'missing file': (_damage_missing_file, 'missing file'),
  'fmri rows vs images': (_damage_rows, 'rows but there are'),
  'hemisphere rows': (_damage_hemi_rows, 'rh fMRI has 40 rows'),
  'mask length': (_damage_mask, 'mask has shape'),
  'nan': (_damage_nan, 'NaN/Inf'),
  'image name': (_damage_name, 'naming pattern'),
}


@pytest.mark.parametrize('case', sorted(DAMAGES))
def test_bad_input_gives_one_line(copy, case):
  damage, pattern = DAMAGES[case]
  damage(copy)
  with pytest.raises(InputError, match=pattern) as e:
    algonauts.load_subject(copy, 'subj01')
  assert '\n' not in str(e.value)


def test_unreadable_png(copy):
  _damage_png(copy)
  s = algonauts.load_subject(copy, 'subj01')
  with pytest.raises(InputError, match='unreadable image .*test-0003'):
    images.load_images(s.image_paths('test'), 'gray', size=32)


def test_missing_subject(tmp_path):
  with pytest.raises(InputError, match='subject subj02 not found'):
    algonauts.load_subject(tmp_path, 'subj02')


def _run_main(*args):
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  return subprocess.run(
    [sys.executable, '-m', 'rdmjax.main', *args],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=300,
  )


@pytest.mark.parametrize('case', ['missing subject', 'nan'])
def test_entry_point_exits_2_with_one_line(copy, tmp_path, case):
  if case == 'nan':
    _damage_nan(copy)
    root = copy
  else:
    root = tmp_path / 'nowhere'
  r = _run_main(
    '--mode=data',
    f'--workdir={tmp_path / "work"}',
    f'--config.data.root={root}',
  )
  assert r.returncode == 2, r.stderr[-2000:]
  err = [ln for ln in r.stderr.splitlines() if ln.startswith('rdmjax: error')]
  assert len(err) == 1 and 'Traceback' not in r.stderr


def test_memory_mapped_reads_in_chunks_equal_full_reads(root, monkeypatch):
  """A memory-mapped subject (what the stages open) reads the same ROI
  arrays, chunk by chunk, aligned for a zero-copy device_put."""
  full = algonauts.load_subject(root, 'subj01')
  mapped = algonauts.load_subject(root, 'subj01', mmap=True)
  monkeypatch.setattr(algonauts, 'ROW_CHUNK', 7)  # several, a partial last
  for roi in ('all', 'V1'):
    x = mapped.responses(roi, 'train')
    np.testing.assert_array_equal(x, full.responses(roi, 'train'))
    assert x.ctypes.data % 64 == 0 and x.flags.writeable
  rows = [5, 2, 9]
  np.testing.assert_array_equal(
    mapped.responses('V1', 'train', rows=rows),
    full.responses('V1', 'train')[rows],
  )
