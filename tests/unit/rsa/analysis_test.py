"""The RDM analysis stage on the tiny synthetic subject, against numpy/scipy.

References are float64: 1 - np.corrcoef, scipy cdist, sklearn's
StandardScaler, scipy spearmanr / pearsonr of the upper triangles.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from scipy.spatial.distance import cdist
from sklearn.preprocessing import StandardScaler

from rdmjax import config_lib, data
from rdmjax.data import (
  algonauts,
  embeddings,
  inputs,  # noqa: E402
  synthetic,
)
from rdmjax.errors import InputError
from rdmjax.report import plots
from rdmjax.rsa import analysis
from rdmjax.rsa import rdm as rdm_lib
from rdmjax.rsa import summary as streaming
from rdmjax.stages import rdm as rdm_stage

KIND_LABELS = (
  'most similar (lowest)',
  'closest to 1',
  'least similar (highest)',
)
REPO = Path(__file__).resolve().parents[3]


def _config():
  config = config_lib.load_sibling(
    str(REPO / 'configs' / 'x.py'), 'default', 'tiny'
  )
  config.data.root = ''
  return config


def _rdm64(x: np.ndarray, metric: str) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if metric == 'correlation':
    return 1 - np.corrcoef(x)
  return cdist(x, x, 'euclidean')


def _z(x: np.ndarray) -> np.ndarray:
  return StandardScaler().fit_transform(np.asarray(x, np.float64))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('analysis')
  config = _config()
  subject = data.subject_from_config(config, workdir)
  ids = subject.nsd_ids('train')
  n = len(ids)
  rng = np.random.default_rng(1)
  # An extra cache, as --mode=embed leaves it, and one of other images.
  fake = rng.normal(size=(n, 16)).astype(np.float32)
  meta = dict(model='fake', layer='x', preprocessing='none', subject='subj01')
  embeddings.write(
    workdir / 'embeddings' / 'fake.npz', fake, ids, ['train'] * n, meta
  )
  embeddings.write(
    workdir / 'embeddings' / 'stale.npz', fake, ids + 1, ['train'] * n, meta
  )
  plots.VECTOR_FORMATS = ('pdf',)  # conftest turns the PDFs off
  try:
    results = rdm_stage.run(config, workdir)
  finally:
    plots.VECTOR_FORMATS = None
  return dict(
    workdir=workdir,
    config=config,
    subject=subject,
    results=results,
    fake=fake,
  )


def test_figures_exist_and_are_pngs(run):
  figs = run['results']['figures']
  names = {Path(p).name for p in figs.values() if p}
  want = {'rdms.png', 'rdm_hist.png', 'rsa.png'}
  for roi in ('V1', 'all'):
    for m in ('correlation', 'euclidean'):
      want |= {f'rdm_{roi}_{m}.png', f'pairs_{roi}_{m}.png'}
    want.add(f'mds_{roi}_correlation.png')  # the first metric's map only
  assert want <= names and 'mds_V1_euclidean.png' not in names
  for p in figs.values():
    with Image.open(run['workdir'] / p) as im:
      assert im.format == 'PNG' and min(im.size) > 100
      np.testing.assert_allclose(im.info['dpi'], (200, 200), atol=0.01)
    pdf = (run['workdir'] / p).with_suffix('.pdf').read_bytes()
    assert pdf.startswith(b'%PDF')


def test_mds_labels_are_the_synthetic_categories(run):
  """The MDS map's colours: each image's category, the one-hot is_*
  latent the synthetic subject drew it from."""
  from rdmjax.data import synthetic
  from rdmjax.data.synthetic_images import CATEGORIES

  c, w, subject = run['config'], run['workdir'], run['subject']
  labels = inputs.image_labels(c, w, subject, 'train')
  ex = synthetic.read_extras(data.data_root(c, w), subject.name)
  onehot = ex['latents_train'][:, : len(CATEGORIES)]
  assert set(np.unique(onehot)) == {0.0, 1.0}
  assert (onehot.sum(1) == 1).all()
  assert labels == [CATEGORIES[k] for k in onehot.argmax(1)]
  assert inputs.image_labels(c, w, subject, 'train', [3, 1]) == [
    labels[3],
    labels[1],
  ]


@pytest.mark.parametrize('roi', ['V1', 'all'])
@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
def test_rdms_are_saved_for_rsatoolbox(run, roi, metric):
  """WORKDIR/rdms/{roi}_{metric}.npz: the condensed RDM (numpy float64
  reference) with the images' NSD ids, read back by rdmjax.rsa.interop."""
  from rdmjax.rsa import interop

  res = run['results']
  f = run['workdir'] / res['rdm_files'][f'{roi} {metric}']
  saved = interop.load_rdms(f)
  subject = run['subject']
  want = _rdm64(_z(subject.responses(roi, 'train')), metric)
  got = saved.rdms[f'{roi} {metric}']
  v = want[np.triu_indices(want.shape[0], 1)]
  np.testing.assert_allclose(got, v, atol=2e-5 * np.abs(v).max())
  assert (saved.nsd_ids == subject.nsd_ids('train')).all()
  assert saved.metrics[f'{roi} {metric}'] == metric
  assert saved.descriptors['roi'] == roi


def test_results_json_is_the_returned_dict(run):
  saved = json.loads((run['workdir'] / 'results.json').read_text())['rdm']
  assert saved['n_images'] == 120
  assert set(saved['rois']) == {'V1', 'all'}
  assert saved['embeddings']['fake']['dim'] == 16
  assert 'error' in saved['embeddings']['stale']  # wrong ids: skipped


@pytest.mark.parametrize('roi', ['V1', 'all'])
@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
def test_extremes_and_moments_match_numpy(run, roi, metric):
  subject = run['subject']
  saved = json.loads((run['workdir'] / 'results.json').read_text())['rdm']
  res = saved['rois'][roi]['metrics'][metric]
  x = _z(subject.responses(roi, 'train'))
  d = _rdm64(x, metric)
  n = d.shape[0]
  iu = np.triu_indices(n, 1)
  v = d[iu]
  ids = subject.nsd_ids('train')
  k = run['config'].rdm.top_k
  keys = {'lowest': v, 'highest': -v}
  if metric == 'correlation':
    keys['closest'] = np.abs(v - 1)
  else:
    assert 'closest' not in res['extremes']
  tol = dict(rtol=1e-5, atol=1e-5)
  for kind, key in keys.items():
    got = res['extremes'][kind]
    assert len(got) == k
    want = v[np.argsort(key, kind='stable')[:k]]
    # Values in rank order; each reported pair really has its value (so the
    # pairs are the brute-force ones up to float32 near-ties).
    np.testing.assert_allclose([p['value'] for p in got], want, **tol)
    for p in got:
      assert p['i'] < p['j']
      assert (p['nsd_i'], p['nsd_j']) == (ids[p['i']], ids[p['j']])
      np.testing.assert_allclose(p['value'], d[p['i'], p['j']], **tol)
  top = v[np.argsort(v)[:k]]
  if top[1] - top[0] > 1e-4:  # a clear winner: exactly the same pair
    i, j = iu[0][np.argmin(v)], iu[1][np.argmin(v)]
    first = res['extremes']['lowest'][0]
    assert (first['i'], first['j']) == (i, j)
  np.testing.assert_allclose(
    [res['min'], res['max'], res['mean'], res['std']],
    [v.min(), v.max(), v.mean(), v.std()],
    rtol=1e-4,
  )
  counts = np.asarray(res['histogram']['counts'])
  edges = np.asarray(res['histogram']['edges'])
  assert counts.sum() == n * (n - 1) // 2 == res['n_pairs']
  ref, _ = np.histogram(v, edges.astype(np.float64))
  # float32 values may sit on the other side of a bin edge.
  assert np.abs(counts - ref).sum() <= 4


@pytest.mark.parametrize('roi', ['V1', 'all'])
@pytest.mark.parametrize('metric', ['correlation', 'euclidean'])
def test_rsa_and_ceiling_match_scipy(run, roi, metric):
  subject = run['subject']
  res = run['results']['rois'][roi]['metrics'][metric]
  x = _z(subject.responses(roi, 'train'))
  fmri = _rdm64(x, metric)
  iu = np.triu_indices(fmri.shape[0], 1)
  syn, _ = embeddings.read(
    synthetic.extras_dir(run['workdir'] / 'data', 'subj01') / 'embeddings.npz',
    split='train',
  )
  for name, emb in (('synthetic', syn), ('fake', run['fake'])):
    e = _rdm64(emb, 'correlation')
    got = res['rsa'][name]
    want_s = stats.spearmanr(fmri[iu], e[iu]).statistic
    want_p = stats.pearsonr(fmri[iu], e[iu]).statistic
    np.testing.assert_allclose(got['spearman'], want_s, atol=1e-4)
    np.testing.assert_allclose(got['pearson'], want_p, atol=1e-4)
  assert 'stale' not in res['rsa']
  f = synthetic.read_extras(run['workdir'] / 'data', 'subj01')
  lh, rh = subject.roi_mask(roi)
  nl = np.concatenate([f['lh_train'][:, lh], f['rh_train'][:, rh]], 1)
  ceil = _rdm64(_z(nl), metric)
  want = stats.spearmanr(fmri[iu], ceil[iu]).statistic
  np.testing.assert_allclose(res['ceiling']['spearman'], want, atol=1e-4)
  # The synthetic subject's design: embeddings see the latents only partly.
  assert res['ceiling']['spearman'] > res['rsa']['synthetic']['spearman']


def test_report_has_the_tables_and_figures(run):
  md = (run['workdir'] / 'report.md').read_text()
  assert '## RDM analysis' in md
  for row in KIND_LABELS:
    assert f'| {row} |' in md
  assert '| ROI | fMRI metric | synthetic | fake | ceiling |' in md
  assert 'stale skipped' in md
  for p in run['results']['figures'].values():
    if p:
      assert f']({p})' in md
  low = run['results']['rois']['V1']['metrics']['correlation']['extremes']
  p = low['lowest'][0]
  assert f'{p["value"]:.3f}: {p["i"]} ({p["nsd_i"]})' in md


def test_block_mean_and_moments_match_numpy():
  rng = np.random.default_rng(0)
  n = 103
  r = rng.random((n, n)).astype(np.float32)
  r = r + r.T
  np.fill_diagonal(r, 0)
  got = np.asarray(analysis._block_mean(r, 10))  # blocks of 11 rows
  edges = np.arange(0, n + 11, 11).clip(max=n)
  want = np.array(
    [
      [r[a:b, c:e].mean() for c, e in zip(edges[:-1], edges[1:])]
      for a, b in zip(edges[:-1], edges[1:])
    ]
  )
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert analysis.display_matrix(r, n).shape == (n, n)
  assert analysis.display_matrix(r, n - 1, 10).shape == (10, 10)
  off = r[~np.eye(n, dtype=bool)].astype(np.float64)
  _, mean, std = streaming.matrix_stats(r, k=1)
  np.testing.assert_allclose([mean, std], [off.mean(), off.std()], rtol=1e-5)


def test_rsa_on_a_subset_matches_scipy(run):
  """Above rdm.max_images the RSA compares RDMs of a seeded subset."""
  subject, config = run['subject'], run['config']
  x = algonauts.standardize(subject.responses('V1', 'train'))
  sub = analysis.rsa_subset(len(x), 50, seed=3)
  assert len(sub) == 50 and np.all(np.diff(sub) > 0)
  assert analysis.rsa_subset(len(x), len(x), seed=3) is None
  emb = {'fake': rdm_lib.rdm(run['fake'][sub])}
  config = config.copy_and_resolve_references()
  config.rdm.max_images = 50
  res, heat = analysis.analyse(
    x,
    'correlation',
    subject.nsd_ids('train'),
    rdm_stage.analysis_options(config),
    emb,
    sub,
    None,
  )
  assert heat.shape == (len(x), len(x))  # n < DISPLAY_SIZE: no averaging
  f = _rdm64(_z(subject.responses('V1', 'train'))[sub], 'correlation')
  e = _rdm64(run['fake'][sub], 'correlation')
  iu = np.triu_indices(50, 1)
  want = stats.spearmanr(f[iu], e[iu]).statistic
  np.testing.assert_allclose(res['rsa']['fake']['spearman'], want, atol=1e-4)
  assert res['ceiling'] is None


@pytest.mark.parametrize(
  'field, value, match',
  [
    ('rois', ('V1', 'V9'), 'unknown ROI'),
    ('metrics', ('manhattan',), 'rdm.metrics'),
  ],
)
def test_bad_config_fails_before_writing(run, tmp_path, field, value, match):
  config = run['config'].copy_and_resolve_references()
  config.rdm[field] = value
  # Reuse the fixture's synthetic subject: no second one is generated.
  (tmp_path / 'data').symlink_to(run['workdir'] / 'data')
  with pytest.raises(InputError, match=match):
    rdm_stage.run(config, tmp_path)
  assert not (tmp_path / 'results.json').exists()
  assert not (tmp_path / 'figures').exists()
