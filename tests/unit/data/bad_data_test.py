"""Untrusted and bad input: every fault is an `InputError` of one line that
names the file or value; nothing in a data folder can run code."""

import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from rdmjax.data import algonauts, checked_io, embeddings, synthetic
from rdmjax.errors import InputError

TINY = dict(
  n_train=12,
  n_test=4,
  n_vertices_lh=100,
  n_vertices_rh=110,
  image_size=32,
  progress=False,
)
FMRI = 'subj01/training_split/training_fmri'
TEST_FMRI = 'subj01/test_split/test_fmri'
ROI = 'subj01/roi_masks'
TRAIN_IMAGES = 'subj01/training_split/training_images'
TEST_IMAGES = 'subj01/test_split/test_images'


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp('algonauts')
  synthetic.write_subject(root, 'subj01', **TINY)
  return root


def _fails(root, pattern, **kw) -> str:
  with pytest.raises(InputError, match=pattern) as e:
    algonauts.load_subject(root, 'subj01', **kw)
  msg = str(e.value)
  assert '\n' not in msg, msg
  return msg


# -- ROI mapping pickles -------------------------------------------------


class _RunsCode:
  """Pickles as a call of os.system: unpickling it runs a shell command."""

  def __init__(self, sentinel: Path):
    self.sentinel = sentinel

  def __reduce__(self):
    return (os.system, (f'touch {self.sentinel}',))


def _npy_with_payload(path: Path, payload: bytes) -> None:
  """A valid .npy header (magic included) for a 0-d object array, then raw
  pickle bytes."""
  buf = io.BytesIO()
  np.lib.format.write_array_header_1_0(
    buf, {'descr': '|O', 'fortran_order': False, 'shape': ()}
  )
  path.write_bytes(buf.getvalue() + payload)


def test_normal_mapping_loads_as_numpy_does(root):
  s = algonauts.load_subject(root, 'subj01')
  for cls in algonauts.CLASSES:
    f = root / ROI / f'mapping_{cls}.npy'
    want = np.load(f, allow_pickle=True).item()
    got = checked_io._load_mapping(f)
    assert got == want and s.mappings[cls] == want
    assert all(type(k) is int and type(v) is str for k, v in got.items())


def test_mapping_with_numpy_keys_and_values_loads(tmp_path):
  f = tmp_path / 'm.npy'
  np.save(f, {np.int64(0): np.str_('Unknown'), np.uint8(1): 'V1v', 2: 'V1d'})
  got = checked_io._load_mapping(f)
  assert got == {0: 'Unknown', 1: 'V1v', 2: 'V1d'}
  assert all(type(k) is int and type(v) is str for k, v in got.items())


@pytest.mark.parametrize('how', ['np.save', 'raw pickle after header'])
def test_mapping_pickle_that_runs_code_is_refused(copy, tmp_path, how):
  sentinel = tmp_path / 'SENTINEL'
  f = copy / ROI / 'mapping_floc-faces.npy'
  if how == 'np.save':
    a = np.empty((), object)
    a[()] = _RunsCode(sentinel)
    np.save(f, a, allow_pickle=True)
  else:
    _npy_with_payload(f, pickle.dumps(_RunsCode(sentinel), protocol=2))
  msg = _fails(copy, r'mapping_floc-faces\.npy is not a plain label dict')
  assert 'system' in msg
  assert not sentinel.exists()
  # The file is really hostile: numpy's own pickle loading runs it.
  np.load(f, allow_pickle=True)
  assert sentinel.exists()


def test_mapping_pickle_with_other_globals_is_refused(tmp_path):
  f = tmp_path / 'm.npy'
  # A harmless-looking global that is still not numpy's array machinery.
  _npy_with_payload(f, pickle.dumps(io.BytesIO, protocol=4))
  with pytest.raises(InputError, match=r'_io\.BytesIO|io\.BytesIO'):
    checked_io._load_mapping(f)
  # Dotted names (protocol 4) cannot reach past the allowed ones.
  payload = b'\x80\x04\x8c\x05numpy\x94\x8c\x0fndarray.__new__\x94\x93\x94.'
  _npy_with_payload(f, payload)
  with pytest.raises(InputError, match='ndarray.__new__'):
    checked_io._load_mapping(f)


@pytest.mark.parametrize(
  'value, pattern',
  [
    (['Unknown', 'V1v'], 'holds a list, not a label dict'),
    ({0: 'Unknown', 1: 3.5}, r'label 1 names 3\.5 \(float\), not a string'),
    ({0: 'Unknown', 'V1v': 'V1v'}, "label code 'V1v' .* not an integer"),
    ({True: 'Unknown'}, 'label code True .* not an integer'),
  ],
  ids=['list', 'float value', 'str key', 'bool key'],
)
def test_mapping_that_is_not_an_int_to_str_dict(copy, value, pattern):
  f = copy / ROI / 'mapping_streams.npy'
  a = np.empty((), object)
  a[()] = value
  np.save(f, a, allow_pickle=True)
  msg = _fails(copy, pattern)
  assert 'mapping_streams.npy' in msg


def test_mapping_that_is_a_numeric_array(copy):
  np.save(copy / ROI / 'mapping_streams.npy', np.arange(3))
  _fails(copy, r'mapping_streams\.npy holds a \(3,\) int64 array')


def test_truncated_mapping(copy):
  f = copy / ROI / 'mapping_streams.npy'
  f.write_bytes(f.read_bytes()[:-20])
  _fails(copy, r'cannot read .*mapping_streams\.npy .*damaged')


# -- damaged and unusual arrays -------------------------------------------


@pytest.mark.parametrize('mmap', [False, True], ids=['read', 'mmap'])
@pytest.mark.parametrize(
  'name',
  [
    f'{FMRI}/lh_training_fmri.npy',
    f'{TEST_FMRI}/rh_test_fmri.npy',
    f'{ROI}/rh.floc-words_challenge_space.npy',
    'subj01/test_split/noise_ceiling/lh_noise_ceiling.npy',
  ],
  ids=['train fmri', 'test fmri', 'mask', 'noise ceiling'],
)
def test_truncated_npy_names_the_file(copy, name, mmap):
  f = copy / name
  f.write_bytes(f.read_bytes()[:-7])
  msg = _fails(copy, 'is truncated', mmap=mmap)
  assert str(f) in msg


def test_damaged_header_names_the_file(copy):
  f = copy / FMRI / 'rh_training_fmri.npy'
  f.write_bytes(f.read_bytes()[:30])  # the header itself is cut
  msg = _fails(copy, 'cannot read .*damaged')
  assert str(f) in msg
  f.write_bytes(b'not an npy file at all')
  _fails(copy, 'cannot read .*rh_training_fmri.npy.*magic')


@pytest.mark.parametrize('mmap', [False, True], ids=['read', 'mmap'])
@pytest.mark.parametrize('dtype', ['float64', '>f4', 'int16', 'uint8'], ids=str)
def test_fmri_of_other_number_types_is_converted(root, copy, dtype, mmap):
  ref = algonauts.load_subject(root, 'subj01')
  want = {}
  for split, folder, stem in (
    ('train', FMRI, 'training_fmri'),
    ('test', TEST_FMRI, 'test_fmri'),
  ):
    for h in algonauts.HEMIS:
      f = copy / folder / f'{h}_{stem}.npy'
      x = np.load(f)
      if np.dtype(dtype).kind in 'iu':
        x = np.round(np.abs(x) * 10)  # whole numbers that fit uint8
      x = x.astype(dtype)
      np.save(f, x)
      want[split, h] = x.astype(np.float32)
  s = algonauts.load_subject(copy, 'subj01', mmap=mmap)
  for (split, h), w in want.items():
    a = s.fmri[split][algonauts.HEMIS.index(h)]
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, w)
  np.testing.assert_array_equal(
    s.responses('V1', 'test'),
    np.concatenate(
      [
        want['test', h][:, m]
        for h, m in zip(algonauts.HEMIS, ref.roi_mask('V1'))
      ],
      axis=1,
    ),
  )
  if dtype == 'float64':
    np.testing.assert_array_equal(s.responses('all'), ref.responses('all'))


@pytest.mark.parametrize(
  'array, pattern',
  [
    (np.ones((12, 100), np.complex64), 'complex64, not a number type'),
    (np.ones((12, 100), bool), 'bool, not a number type'),
    (np.ones((12, 10, 10), np.float32), r'\(12, 10, 10\), not 2-D'),
  ],
  ids=['complex', 'bool', '3-D'],
)
def test_fmri_that_is_not_a_number_matrix(copy, array, pattern):
  f = copy / FMRI / 'lh_training_fmri.npy'
  np.save(f, array)
  msg = _fails(copy, pattern)
  assert str(f) in msg


def test_fmri_of_python_objects_is_not_unpickled(copy, tmp_path):
  sentinel = tmp_path / 'SENTINEL'
  a = np.empty((12, 100), object)
  a[0, 0] = _RunsCode(sentinel)
  np.save(copy / FMRI / 'lh_training_fmri.npy', a, allow_pickle=True)
  _fails(copy, 'fMRI has dtype object, not a number type')
  assert not sentinel.exists()


@pytest.mark.parametrize('mmap', [False, True], ids=['read', 'mmap'])
def test_fortran_ordered_fmri_reads_the_same(root, copy, mmap, monkeypatch):
  for folder, stem in ((FMRI, 'training_fmri'), (TEST_FMRI, 'test_fmri')):
    for h in algonauts.HEMIS:
      f = copy / folder / f'{h}_{stem}.npy'
      np.save(f, np.asfortranarray(np.load(f)))
      with open(f, 'rb') as fh:
        np.lib.format.read_magic(fh)
        assert np.lib.format.read_array_header_1_0(fh)[1]  # fortran_order
  monkeypatch.setattr(algonauts, 'ROW_CHUNK', 5)  # several, a partial last
  ref = algonauts.load_subject(root, 'subj01')
  s = algonauts.load_subject(copy, 'subj01', mmap=mmap)
  for a in s.fmri['train'] + s.fmri['test']:
    assert a.flags.f_contiguous and isinstance(a, np.memmap) == mmap
  for split in ('train', 'test'):
    for roi in ('all', 'V1'):
      np.testing.assert_array_equal(
        s.responses(roi, split), ref.responses(roi, split)
      )
    np.testing.assert_array_equal(
      s.responses('V1', split, rows=[3, 0, 2]),
      ref.responses('V1', split)[[3, 0, 2]],
    )


@pytest.mark.parametrize('mmap', [False, True], ids=['read', 'mmap'])
def test_nan_in_fortran_fmri_names_row_and_vertex(copy, mmap, monkeypatch):
  monkeypatch.setattr(algonauts, 'ROW_CHUNK', 7)
  f = copy / FMRI / 'rh_training_fmri.npy'
  a = np.load(f)
  a[9, 45] = np.nan
  np.save(f, np.asfortranarray(a))
  _fails(
    copy, r'1 NaN/Inf values \(first at image row 9, vertex 45\)', mmap=mmap
  )


def test_fractional_mask(copy):
  f = copy / ROI / 'lh.floc-faces_challenge_space.npy'
  lab = np.load(f).astype(np.float64)
  np.save(f, lab)  # whole numbers stored as floats are fine
  algonauts.load_subject(copy, 'subj01')
  lab[4] = 1.5
  np.save(f, lab)
  msg = _fails(copy, 'mask holds fractional values')
  assert str(f) in msg


def test_float32_fmri_stays_memory_mapped(root):
  s = algonauts.load_subject(root, 'subj01', mmap=True)
  for a in s.fmri['train'] + s.fmri['test']:
    assert isinstance(a, np.memmap) and a.dtype == np.float32
  s = algonauts.load_subject(root, 'subj01')
  assert not any(isinstance(a, np.memmap) for a in s.fmri['train'])


# -- fMRI rows and image files --------------------------------------------


def test_test_fmri_rows_disagree_with_test_images(copy):
  for h in algonauts.HEMIS:
    f = copy / TEST_FMRI / f'{h}_test_fmri.npy'
    np.save(f, np.load(f)[:-1])
  msg = _fails(copy, 'lh fMRI has 3 rows but there are 4 images')
  assert 'test_split' in msg


def _images(d: Path, folder: str = TRAIN_IMAGES) -> list[Path]:
  return sorted((d / folder).glob('*.png'))


def test_duplicated_nsd_id(copy):
  imgs = _images(copy)
  nsd = imgs[3].name.split('_nsd-')[1]
  pos = imgs[7].name.split('_')[0]
  imgs[7].rename(imgs[7].with_name(f'{pos}_nsd-{nsd}'))
  msg = _fails(copy, f'both name NSD id {int(nsd[:5])}: an image is dup')
  assert imgs[3].name in msg and f'{pos}_nsd-{nsd}' in msg


def test_duplicated_nsd_id_in_test_images(copy):
  imgs = _images(copy, TEST_IMAGES)
  nsd = imgs[0].name.split('_nsd-')[1]
  imgs[2].rename(imgs[2].with_name(f'test-0003_nsd-{nsd}'))
  _fails(copy, f'test-0003_nsd-{nsd} both name NSD id')


def test_image_positions_that_skip(copy):
  imgs = _images(copy)
  last = imgs[-1]
  nsd = last.name.split('_nsd-')[1]
  last.rename(last.with_name(f'train-{len(imgs) + 1:04d}_nsd-{nsd}'))
  msg = _fails(copy, f'position {len(imgs)} of the sorted list but its name')
  assert f'train-{len(imgs) + 1:04d}' in msg
  assert f'train-0001 ... train-{len(imgs):04d} without gaps' in msg


def test_image_position_repeated(copy):
  imgs = _images(copy)
  nsd = imgs[5].name.split('_nsd-')[1]
  imgs[5].rename(imgs[5].with_name(f'train-0005_nsd-{nsd}'))
  _fails(copy, 'position 6 of the sorted list but its name says 5')


@pytest.mark.parametrize('folder', [TRAIN_IMAGES, TEST_IMAGES])
def test_empty_image_folder(copy, folder):
  for p in _images(copy, folder):
    p.unlink()
  msg = _fails(copy, 'no (train|test) images')
  assert str(copy / folder) in msg


def test_missing_image_folder(copy):
  shutil.rmtree(copy / TRAIN_IMAGES)
  _fails(copy, 'missing folder .*training_images')


# -- embedding cache ------------------------------------------------------

META = dict(model='m', layer='l', preprocessing='p', subject='subj01')


def _cache(path, emb, ids, splits, meta=META):
  np.savez(
    path,
    embeddings=emb,
    nsd_ids=np.asarray(ids, np.int64),
    splits=np.asarray(splits, '<U5'),
    meta=np.asarray(json.dumps(meta)),
  )


def test_embedding_cache_with_nan_rows(tmp_path):
  emb = np.ones((8, 4), np.float32)
  emb[2, 1] = np.nan
  emb[5] = np.inf
  emb[7, 0] = np.nan  # a test row
  ids = np.arange(8) + 100
  splits = ['train'] * 6 + ['test'] * 2
  f = tmp_path / 'c.npz'
  _cache(f, emb, ids, splits)
  with pytest.raises(InputError, match=r'3 of 8 rows hold NaN or Inf') as e:
    embeddings.read(f)
  assert str(f) in str(e.value) and '\n' not in str(e.value)
  with pytest.raises(InputError, match=r'2 of 6 rows .* NSD id 102'):
    embeddings.read(f, split='train', expect_ids=ids[:6])
  with pytest.raises(InputError, match=r'split=test\): 1 of 2 rows'):
    embeddings.read(f, split='test')
  emb[7, 0] = 0
  _cache(f, emb, ids, splits)
  got, _ = embeddings.read(f, split='test')
  np.testing.assert_array_equal(got, emb[6:])


@pytest.mark.parametrize(
  'case', ['shapes', 'strings', 'meta list', 'truncated zip']
)
def test_embedding_cache_that_is_malformed(tmp_path, case):
  f = tmp_path / 'c.npz'
  ids, splits = np.arange(3), ['train'] * 3
  if case == 'shapes':
    _cache(f, np.ones((3, 4)), np.arange(2), splits)
  elif case == 'strings':
    _cache(f, np.full((3, 4), 'x'), ids, splits)
  elif case == 'meta list':
    _cache(f, np.ones((3, 4)), ids, splits, meta=[1, 2])
  else:
    embeddings.write(f, np.ones((3, 4)), ids, splits, META, writer=True)
    f.write_bytes(f.read_bytes()[:-40])
  with pytest.raises(InputError, match='is not a valid cache') as e:
    embeddings.read(f)
  assert '\n' not in str(e.value)
