"""Training end to end on the tiny synthetic subject (8 fake CPU devices)."""

import json

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import r2_score
from tiny_run import tiny, workdir

from rdmjax import config_lib, sharding
from rdmjax.errors import InputError
from rdmjax.stages import train as train_stage
from rdmjax.training import evaluation as evaluate
from rdmjax.training import loop as train
from rdmjax.training import scoring

HERE = 'configs/x.py'
_workdir = workdir


def _setup(config, datadir, devices):
  data = train.load_data(config, datadir)
  mesh = sharding.make_mesh(config.mesh, devices)
  tx, lr = train.make_optimizer(config)
  g, state = train.init_state(
    config, data.meta['d_in'], tx, mesh, train.target_mean(config, data)
  )
  dd = sharding.put_replicated({'z': data.z, 'x': data.x}, mesh)
  split = sharding.put_replicated(data.split, mesh)
  step = train.make_train_step(g, tx, lr, config, mesh)
  return data, mesh, g, state, dd, split, step


def test_sharded_step_matches_single_device(datadir):
  c = tiny()
  losses = {}
  for n_dev in (1, 8):
    *_, state, dd, split, step = _setup(c, datadir, jax.devices()[:n_dev])
    out = []
    for _ in range(3):
      state, logs = step(state, dd, split['train'])
      out.append(float(logs['loss']))
    losses[n_dev] = out
  assert len(jax.devices()) == 8
  np.testing.assert_allclose(losses[8], losses[1], rtol=2e-4)


def test_one_compile_and_stable_shardings(datadir):
  c = tiny()
  _, mesh, _, state, dd, split, step = _setup(c, datadir, jax.devices())
  shardings = None
  with jax.transfer_guard('disallow'):
    for _ in range(4):
      state, _ = step(state, dd, split['train'])
      now = jax.tree.map(lambda a: a.sharding, state)
      assert shardings is None or now == shardings
      shardings = now
  assert step._cache_size() == 1
  assert all(s.is_fully_replicated for s in jax.tree.leaves(shardings)), (
    'params and optimizer state stay replicated'
  )


def test_init_is_one_program_for_every_seed_and_bias(datadir):
  """The leaked run, folds and ROIs initialise with the main run's program:
  seed and bias are its arguments, not constants."""
  c = tiny()
  d_in = train.load_data(c, datadir).meta['d_in']
  mesh = sharding.make_mesh(c.mesh)
  states = []
  for seed, bias in ((0, 0.9), (0, 1.1), (3, 0.9)):
    with c.unlocked():
      c.seed = seed
    tx, _ = train.make_optimizer(c)
    states.append(train.init_state(c, d_in, tx, mesh, bias)[1])
  init = train._init_program(c, d_in, tx, mesh)
  assert init._cache_size() == 1
  bias = [np.asarray(s['params']['out']['bias'].value) for s in states]
  np.testing.assert_array_equal(bias[0], np.float32(0.9))
  np.testing.assert_array_equal(bias[1], np.float32(1.1))
  kernel = [np.asarray(s['params']['out']['kernel'].value) for s in states]
  np.testing.assert_array_equal(kernel[0], kernel[1])  # the seed's
  assert not np.array_equal(kernel[0], kernel[2])


def _reference(g, params, data, c, i, j):
  """Scores of pairs (i, j), model called per pair, targets in float64."""
  from flax import nnx

  model = nnx.merge(g, jax.device_get(params))
  pred = np.asarray(model(data.x[i], data.x[j]), np.float64)
  z = data.z.astype(np.float64)
  true = np.array([pdist(z[[a, b]], c.pairs.metric)[0] for a, b in zip(i, j)])
  return pred, true


def _check_scores(got, pred, true):
  assert got['n_pairs'] == len(pred)
  np.testing.assert_allclose(got['r2'], r2_score(true, pred), atol=1e-3)
  np.testing.assert_allclose(
    got['spearman'], stats.spearmanr(pred, true)[0], atol=1e-3
  )
  np.testing.assert_allclose(
    got['pearson'], stats.pearsonr(pred, true)[0], atol=1e-3
  )


def test_scores_every_test_pair_as_sklearn_and_scipy(datadir):
  c = tiny(**{'pairs.eval_tile': 8})  # several tiles, diagonal and off
  data, mesh, g, state, dd, split, step = _setup(c, datadir, jax.devices())
  for _ in range(5):
    state, _ = step(state, dd, split['train'])
  ev = evaluate.make_eval_fn(g, c, mesh)
  es = evaluate.eval_set(data, 'test', c, mesh)
  got, mats = evaluate.score(ev, state['params'], dd, es, keep_matrix=True)
  # Reference: every unordered test pair once, model called per pair.
  test = data.split['test']
  a, b = np.triu_indices(len(test), 1)  # pdist's order
  pred, true = _reference(g, state['params'], data, c, test[a], test[b])
  _check_scores(got, pred, true)
  assert got['n_all'] == len(a) and es.exact
  np.testing.assert_allclose(mats['true'], mats['true'].T)
  np.testing.assert_allclose(mats['true'][a, b], true, rtol=1e-4)
  np.testing.assert_allclose(mats['pred'][a, b], pred, rtol=1e-4, atol=1e-6)
  assert ev._cache_size() == 1
  evaluate.score(ev, state['params'], dd, es)
  assert ev._cache_size() == 1, 'scoring again compiles nothing'


def test_subset_of_images_is_fixed_seeded_and_scored_exactly(datadir):
  c = tiny(**{'pairs.eval_tile': 8, 'train.max_eval_pairs': 40})
  data, mesh, g, state, dd, split, step = _setup(c, datadir, jax.devices())
  state, _ = step(state, dd, split['train'])
  es = evaluate.eval_set(data, 'val', c, mesh)
  m = len(data.split['val'])
  # 9 images: 36 pairs (10 would be 45 > 40), all of them.
  assert len(es.images) == 9 and len(es.i) == 36
  assert es.n_all == m * (m - 1) // 2 > 40 and not es.exact
  assert set(es.images) <= set(data.split['val'])
  a, b = np.triu_indices(9, 1)
  np.testing.assert_array_equal(es.i, es.images[a])
  np.testing.assert_array_equal(es.j, es.images[b])
  again = evaluate.eval_set(data, 'val', c, mesh)
  np.testing.assert_array_equal(again.images, es.images)
  ev = evaluate.make_eval_fn(g, c, mesh)
  got, mats = evaluate.score(ev, state['params'], dd, es, keep_matrix=True)
  assert mats is None  # no matrix from a subset
  assert got['n_all'] == es.n_all
  pred, true = _reference(g, state['params'], data, c, es.i, es.j)
  np.testing.assert_allclose(es.target, true, rtol=1e-4, atol=1e-5)
  _check_scores(got, pred, true)


@pytest.mark.parametrize('cap', [0, 200])
def test_leaked_scores_its_own_test_pairs(datadir, cap):
  from rdmjax.training import pairs

  c = tiny(**{'pairs.leaked': True, 'train.max_eval_pairs': cap})
  data, mesh, g, state, dd, split, step = _setup(c, datadir, jax.devices())
  es = evaluate.eval_set(data, 'test', c, mesh)
  n = data.z.shape[0]
  a, b = np.triu_indices(n, 1)
  sid = np.asarray(pairs.pair_split_id(a, b, c.pairs.fractions, c.seed))
  assert es.n_all == np.sum(sid == 2)
  among = np.isin(a, es.images) & np.isin(b, es.images)
  want = set(zip(a[(sid == 2) & among], b[(sid == 2) & among]))
  assert set(zip(es.i, es.j)) == want and len(es.i) == len(want)
  if cap:  # s(s-1)/2 * 0.1 <= 200: 63 of the 120 images
    assert len(es.images) == 63 and not es.exact
  else:
    assert len(es.images) == n and es.exact
  _, true = _reference(g, state['params'], data, c, es.i, es.j)
  np.testing.assert_allclose(es.target, true, rtol=1e-4, atol=1e-5)


def _params(workdir):
  rows = [json.loads(x) for x in (workdir / 'metrics.jsonl').open()]
  return rows


@pytest.mark.slow
def test_interrupted_and_resumed_equals_straight(datadir, tmp_path):
  c = tiny(
    **{
      'train.steps': 6,
      'ckpt.every': 3,
      'train.eval_every': 3,
      'train.log_every': 1,
    }
  )
  a = _workdir(datadir, tmp_path / 'a')
  b = _workdir(datadir, tmp_path / 'b')
  # Killed after step 4: step 4 is lost, the run resumes from step 3.
  train.train(c, a, stop_after=4)
  # What a kill -9 during a save leaves: an unfinished tmp folder.
  junk = a / 'ckpt' / '5.orbax-checkpoint-tmp-1700000000000' / 'state'
  junk.mkdir(parents=True)
  (junk / 'x').write_bytes(b'\0')
  ra = train.train(c, a)
  rb = train.train(c, b)
  assert not junk.parent.exists()
  la = [r['loss'] for r in _params(a)]
  lb = [r['loss'] for r in _params(b)]
  assert [r['step'] for r in _params(a)] == [1, 2, 3, 4, 5, 6]
  np.testing.assert_allclose(la, lb, rtol=1e-6)
  for x, y in zip(jax.tree.leaves(ra.params), jax.tree.leaves(rb.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)
  assert ra.test == rb.test
  # A rerun of a finished workdir resumes at the end: nothing retrained.
  rc = train.train(c, a)
  assert rc.test == ra.test


def test_block_not_dividing_devices(datadir):
  c = tiny(**{'pairs.block_size': 10})  # 45 pairs over 8 devices
  with pytest.raises(InputError, match='block_size=16|block_size=17'):
    train.train(c, datadir)


def test_split_too_small_for_block(datadir):
  c = tiny(**{'pairs.block_size': 512})
  with pytest.raises(InputError, match='exceeds'):
    train.train(c, datadir)


def test_checkpoint_of_another_model(datadir, tmp_path):
  w = _workdir(datadir, tmp_path)
  train.train(tiny(**{'train.steps': 2, 'ckpt.every': 1}), w)
  with pytest.raises(InputError, match='hidden'):
    train.train(tiny(**{'train.steps': 4, 'model.hidden': (16,)}), w)


@pytest.mark.parametrize(
  'change,key',
  [
    ({'seed': 1}, 'split_seed'),
    ({'pairs.fractions': (0.7, 0.15, 0.15)}, 'fractions'),
    ({'pairs.leaked': True}, 'leaked'),
    ({'pairs.metric': 'euclidean'}, 'metric'),
    ({'data.roi': 'V1'}, 'roi'),
  ],
)
def test_scoring_a_checkpoint_under_another_split_fails(
  datadir, tmp_path, change, key
):
  """--mode=eval under another split would score training images: one
  line naming the field (main turns InputError into exit 2)."""
  from rdmjax.stages import eval as eval_stage

  w = _workdir(datadir, tmp_path)
  train.train(tiny(**{'train.steps': 2, 'ckpt.every': 1}), w)
  c = tiny(**{k: v for k, v in change.items() if '.' in k})
  with c.unlocked():
    c.seed = change.get('seed', c.seed)
  with pytest.raises(InputError, match=f'{key}='):
    eval_stage.run(c, w)


def test_output_that_cannot_reach_the_targets(datadir):
  with pytest.raises(InputError, match='sigmoid2.*euclidean'):
    train.train(
      tiny(**{'model.output': 'sigmoid2', 'pairs.metric': 'euclidean'}),
      datadir,
    )


def test_test_scores_and_baselines_on_the_same_pairs(datadir, tmp_path):
  """Every baseline on exactly the model's test pairs, against references:
  scipy's distances of the noiseless responses and embeddings, and
  scikit-learn's RidgeCV (leave-one-out on training images) predictions."""
  from sklearn.linear_model import RidgeCV

  from rdmjax.rsa import encoding

  c = tiny(**{'train.steps': 2, 'ckpt.every': 1, 'train.bootstrap': 50})
  r = train.train(c, _workdir(datadir, tmp_path))
  got = scoring.test_scores(c, r)
  tp, d = r.test_pairs, r.data
  a, b = np.searchsorted(tp.images, tp.i), np.searchsorted(tp.images, tp.j)
  assert got['n_pairs'] == len(tp.i) == r.test['n_pairs']
  sc = got['scores']

  def rho(x):
    return stats.spearmanr(x, tp.target).statistic

  def pairs_of(rows, metric):
    return squareform(pdist(rows[tp.images].astype(np.float64), metric))[a, b]

  want = {
    'model': rho(tp.pred),
    'ceiling': rho(pairs_of(d.z_noiseless, 'correlation')),
    'zero_shot': rho(pairs_of(d.emb, 'correlation')),
  }
  train_idx = d.split['train']
  alphas = (
    encoding.RELATIVE_ALPHAS
    * np.trace(np.cov(d.emb[train_idx].astype(np.float64).T, bias=True))
    * len(train_idx)
    / d.emb.shape[1]
  )
  sk = RidgeCV(alphas=alphas).fit(d.emb[train_idx], d.z[train_idx])
  want['ridge'] = rho(
    squareform(pdist(sk.predict(d.emb[tp.images]), 'correlation'))[a, b]
  )
  for name, w in want.items():
    assert sc[name]['spearman']['value'] == pytest.approx(w, abs=2e-3), name
    lo, hi = sc[name]['spearman']['low'], sc[name]['spearman']['high']
    assert lo < sc[name]['spearman']['value'] < hi
  f = sc['model']['fraction_of_ceiling']['value']
  assert f == pytest.approx(want['model'] / want['ceiling'], rel=1e-3)
  assert got['_samples']['model']['spearman'].shape == (50,)


def test_embeddings_of_other_images(datadir, tmp_path):
  from rdmjax.data import embeddings

  bad = tmp_path / 'bad.npz'
  embeddings.write(
    bad,
    np.ones((5, 4)),
    np.arange(5),
    ['train'] * 5,
    dict(model='m', layer='l', preprocessing='p', subject='s'),
  )
  with pytest.raises(InputError, match='ids differ|images'):
    train.train(tiny(**{'data.embeddings': str(bad)}), datadir)


def _learn_config(name, **over):
  """Tiny, but with enough held-out pairs for a stable Spearman: 300
  images (180 train, 60 val, 60 test: 1770 test pairs)."""
  c = config_lib.load_sibling(HERE, name, 'tiny')
  with c.unlocked():
    c.data.synthetic.n_train = 300
    c.pairs.fractions = (0.6, 0.2, 0.2)
    c.pairs.block_size = 64
    c.train.steps = 100
    c.train.eval_every = 20
    c.ckpt.every = 20
    c.optim.lr = 1e-3
    for k, v in over.items():
      sec, field = k.split('.')
      c[sec][field] = v
  return c


@pytest.fixture(scope='module')
def mlp_run(tmp_path_factory):
  c = _learn_config(
    'default', **{'model.hidden': (64,), 'train.run_leaked': True}
  )
  w = tmp_path_factory.mktemp('learn')
  r = train_stage.run(c, w)
  r['_workdir'] = w
  return r


# Bounds from measurement (CPU, seed 0): disjoint Spearman 0.336, zero-shot
# RSA 0.259, ceiling 0.530 (63%), leaked 0.406.
@pytest.mark.slow
def test_mlp_learns_beyond_zero_shot(mlp_run):
  r = mlp_run
  assert r['test']['spearman'] > 0.27
  assert r['test']['spearman'] > r['zero_shot_rsa'] + 0.04
  assert r['fraction_of_ceiling'] > 0.5
  assert r['test']['n_pairs'] == 60 * 59 // 2


@pytest.mark.slow
def test_leaked_scores_exceed_disjoint(mlp_run):
  assert mlp_run['leaked']['test']['spearman'] > (
    mlp_run['test']['spearman'] + 0.04
  )


@pytest.mark.slow
def test_leaked_and_disjoint_on_equal_footing(mlp_run):
  """As many test pairs each, each run with its own ceiling and baselines,
  and the difference of fractions of ceiling with its interval."""
  r, lk = mlp_run, mlp_run['leaked']
  assert lk['n_pairs'] == r['test']['n_pairs'] == 60 * 59 // 2
  assert lk['n_images'] > r['n_images']['test']
  for name in ('model', 'zero_shot', 'ridge', 'reweighted', 'ceiling'):
    assert name in r['scores'] and name in lk['scores']
  d = r['leaked_minus_disjoint']
  assert d['stat'] == 'fraction_of_ceiling'
  want = (
    lk['scores']['model']['fraction_of_ceiling']['value']
    - r['scores']['model']['fraction_of_ceiling']['value']
  )
  assert d['value'] == pytest.approx(want)
  assert d['low'] < d['value'] < d['high']


@pytest.mark.slow
def test_report_and_figures_written(mlp_run):
  w = mlp_run['_workdir']
  results = json.loads((w / 'results.json').read_text())['train']
  for f in results['figures'].values():
    assert (w / f).is_file()
  text = (w / 'report.md').read_text()
  assert 'Leaked split' in text and 'zero-shot RSA' in text
  assert 'Leaked minus image-disjoint' in text and 'ridge encoding' in text
  # The leaked run reads this run's subject: no second copy written.
  assert (w / 'leaked' / 'ckpt').is_dir() and not (
    w / 'leaked' / 'data'
  ).exists()
  rows = [json.loads(x) for x in (w / 'metrics.jsonl').open()]
  assert rows[-1]['step'] == 100 and 'val_spearman' in rows[-1]
  # The reference study's figures beside this run's own.
  assert 'The reference study side by side' in text
  study = results['study']
  assert study[-2][1].startswith('-0.0039')
  assert study[-2][2].startswith(
    f'{results["scores"]["model"]["r2"]["value"]:.3f}'
  )


# Measured (CPU, seed 0): Siamese CNN on V1, 32 px, 100 steps: test
# Spearman 0.214 (ceiling 0.575); chance is 0.
@pytest.mark.slow
def test_siamese_cnn_beats_chance_on_v1(tmp_path):
  c = _learn_config('siamese_cnn')
  r = train_stage.run(c, tmp_path)
  # Beside a pixel model: the embedding baselines on the same test pairs.
  assert r['roi'] == 'V1' and r['embeddings'] is None
  assert {'zero_shot', 'ridge', 'ceiling'} <= set(r['scores'])
  # Chance on these 60 test images (the target RDM against itself with the
  # images permuted, 500 permutations): sd 0.023, 99th percentile 0.058,
  # max 0.076. Measured over data seeds 0-3: 0.103 to 0.284.
  assert r['test']['spearman'] > 0.08
  assert r['test']['n_pairs'] == 60 * 59 // 2


def test_cpu_devices_share_aligned_responses_instead_of_copying():
  """XLA's CPU client aliases 64-byte-aligned host arrays (the reader's
  responses are): the full subject is not copied again on device_put."""
  from rdmjax.data import algonauts

  z = algonauts.aligned_empty((64, 300))
  assert z.ctypes.data % 64 == 0
  z[:] = 1.0
  mesh = sharding.make_mesh((('data', 1),), jax.devices()[:1])
  shared = sharding.put_replicated(z, mesh)
  z[0, 0] = 7.0  # the shared device array sees the host write
  assert float(shared[0, 0]) == 7.0
  unaligned = np.ones(64 * 300 + 1, np.float32)[1:].reshape(64, 300)
  kept = sharding.put_replicated(unaligned, mesh)
  unaligned[0, 0] = 7.0
  assert float(kept[0, 0]) == 1.0  # copied: numpy's alignment is not enough


def test_leaked_pair_counts_over_several_row_blocks():
  from rdmjax.training import pairs

  n = 600  # three blocks of 256 rows, the last one padded
  a, b = np.triu_indices(n, 1)
  sid = np.asarray(pairs.pair_split_id(a, b, (0.8, 0.1, 0.1), 3))
  want = tuple(int(np.sum(sid == k)) for k in range(3))
  assert evaluate.leaked_pair_counts(n, (0.8, 0.1, 0.1), 3) == want
  assert sum(want) == n * (n - 1) // 2


def test_sweep_chooses_on_validation_and_scores_test_once(
  datadir, tmp_path, monkeypatch
):
  from rdmjax.stages import sweep

  calls = []
  real = evaluate.score_test

  def counted(*a, **k):
    calls.append(1)
    return real(*a, **k)

  monkeypatch.setattr(evaluate, 'score_test', counted)
  c = tiny(**{'train.steps': 4, 'train.eval_every': 2, 'ckpt.every': 2})
  with c.unlocked():
    c.sweep.param = 'model.hidden'
    c.sweep.grid = ((8,), (16,))
    c.train.bootstrap = 20
  res = sweep.run(c, _workdir(datadir, tmp_path))
  vals = {r['name']: r['val_spearman'] for r in res['runs']}
  assert len(vals) == 2 and res['chosen'] == max(vals, key=vals.get)
  assert len(calls) == 1, 'test pairs scored while choosing'
  val = res['val']  # every run on the same validation pairs and draws
  for name, v in vals.items():
    iv = val['scores'][name]['spearman']
    assert iv['value'] == pytest.approx(v, abs=1e-5)
    assert iv['low'] <= iv['value'] <= iv['high']
  other = next(n for n in vals if n != res['chosen'])
  d = val['minus_reference'][other]
  assert d['value'] == pytest.approx(
    vals[other] - vals[res['chosen']], abs=1e-5
  )
  assert 'test_comparison' not in res
  m = res['test']['scores']['model']['spearman']
  assert m['low'] <= m['value'] <= m['high']
  assert (
    'chosen on validation pairs only' in (tmp_path / 'report.md').read_text()
  )


def test_sweep_compares_losses_on_the_same_test_pairs(datadir, tmp_path):
  """sweep.compare_on_test: every loss on the chosen run's test pairs,
  beside one ceiling, each minus the first (paired draws)."""
  from rdmjax.stages import sweep

  c = tiny(**{'train.steps': 4, 'train.eval_every': 2, 'ckpt.every': 2})
  with c.unlocked():
    c.sweep.param = 'train.loss'
    c.sweep.grid = ('mse', 'soft_spearman')
    c.sweep.compare_on_test = True
    c.train.bootstrap = 20
  res = sweep.run(c, _workdir(datadir, tmp_path))
  tc = res['test_comparison']
  assert tc['reference'] == 'train.loss=mse'
  sc = tc['scores']
  assert {'train.loss=mse', 'train.loss=soft_spearman', 'ceiling'} <= set(sc)
  # The chosen run's own test score is the one of its row.
  chosen = sc[res['chosen']]['spearman']['value']
  assert chosen == pytest.approx(
    res['test']['scores']['model']['spearman']['value'], abs=1e-6
  )
  d = tc['minus_reference']['train.loss=soft_spearman']
  want = (
    sc['train.loss=soft_spearman']['spearman']['value']
    - sc['train.loss=mse']['spearman']['value']
  )
  assert d['value'] == pytest.approx(want, abs=1e-6)
  assert d['low'] <= d['value'] <= d['high']
  assert 'fraction_of_ceiling' in sc['train.loss=mse']
  assert 'not used for the choice' in (tmp_path / 'report.md').read_text()


def test_concat_mlp_trains_through_the_same_loop(datadir, tmp_path):
  c = tiny(**{'train.steps': 2, 'ckpt.every': 1, 'model.hidden': (8,)})
  with c.unlocked():
    c.model.name = 'concat_mlp'
  r = train.train(c, _workdir(datadir, tmp_path))
  assert np.isfinite(r.test['spearman'])
  assert r.data.meta['model']['order_free'] is True


def test_official_test_images_are_scored_with_training_statistics(
  datadir, tmp_path
):
  """pairs.test_images=official: the test pairs are those of the subject's
  test images, their targets from test responses standardised with the
  training images' statistics (scipy, float64)."""
  from rdmjax import data as data_lib
  from rdmjax.data import algonauts

  c = tiny(**{'train.steps': 2, 'ckpt.every': 1, 'train.bootstrap': 20})
  with c.unlocked():
    c.pairs.test_images = 'official'
  r = train.train(c, _workdir(datadir, tmp_path))
  subject = data_lib.subject_from_config(c, datadir)
  n, n_test = subject.n_images('train'), subject.n_images('test')
  np.testing.assert_array_equal(r.data.split['test'], np.arange(n, n + n_test))
  train_rows = r.data.split['train']
  assert len(train_rows) + len(r.data.split['val']) == n
  x = subject.responses('all', 'train').astype(np.float64)
  std = algonauts.Standardizer.fit(x, rows=train_rows)
  zt = (subject.responses('all', 'test') - std.mean) / std.scale
  want = pdist(zt, 'correlation')
  tp = r.test_pairs
  np.testing.assert_allclose(
    tp.target, want[_condensed(tp.i - n, tp.j - n, n_test)], atol=2e-5
  )
  scored = scoring.test_scores(c, r)
  got = scored['scores']
  assert 'ceiling' in got and np.isfinite(got['ceiling']['spearman']['value'])
  # The ridge's per-vertex accuracy, as the Algonauts devkit: scikit-learn's
  # RidgeCV on the training rows, Pearson r per vertex, 100 r^2 / NC.
  from sklearn.linear_model import RidgeCV

  from rdmjax.rsa import encoding

  d = r.data
  e64 = d.emb[train_rows].astype(np.float64)
  alphas = (
    encoding.RELATIVE_ALPHAS
    * np.trace(np.cov(e64.T, bias=True))
    * len(train_rows)
    / d.emb.shape[1]
  )
  sk = RidgeCV(alphas=alphas).fit(e64, d.z[train_rows])
  pred = sk.predict(d.emb[r.data.split['test']].astype(np.float64))
  y = d.z[r.data.split['test']].astype(np.float64)
  rv = np.array(
    [np.corrcoef(pred[:, k], y[:, k])[0, 1] for k in range(y.shape[1])]
  )
  enc = scored['encoding']
  assert enc['r_median'] == pytest.approx(np.median(rv), abs=2e-3)
  nc = np.concatenate(
    [c_[m] for c_, m in zip(subject.noise_ceiling, subject.roi_mask('all'))]
  )
  want = np.median(np.minimum(100 * np.maximum(rv, 0) ** 2 / nc, 100))
  assert enc['nc_score_median'] == pytest.approx(want, abs=0.5)
  with c.unlocked():
    c.pairs.leaked = True
  with pytest.raises(InputError, match='official'):
    train.train(c, tmp_path / 'x')


def _condensed(i, j, n):
  return n * i - i * (i + 1) // 2 + (j - i - 1)


def test_folds_repeat_the_image_split_and_average(datadir, tmp_path):
  """pairs.folds=3: seeds 0, 1, 2; the mean over splits with a t interval
  (scipy), the first split being this run's own."""
  c = tiny(**{'train.steps': 2, 'ckpt.every': 1, 'train.bootstrap': 20})
  with c.unlocked():
    c.pairs.folds = 3
  res = train_stage.run(c, _workdir(datadir, tmp_path))
  fo = res['folds']
  assert fo['seeds'] == [0, 1, 2] and fo['n'] == 3
  m = fo['model']['spearman']
  v = np.array(m['folds'])
  assert v[0] == pytest.approx(res['scores']['model']['spearman']['value'])
  assert len(set(v.round(6))) == 3
  lo, hi = stats.t.interval(0.95, 2, loc=v.mean(), scale=stats.sem(v))
  assert (m['value'], m['low'], m['high']) == pytest.approx((v.mean(), lo, hi))
  assert (tmp_path / 'folds' / 'seed2' / 'metrics.jsonl').is_file()
  assert 'image splits' in (tmp_path / 'report.md').read_text()


def test_one_model_per_target_roi(datadir, tmp_path):
  c = tiny(**{'train.steps': 2, 'ckpt.every': 1, 'train.bootstrap': 20})
  with c.unlocked():
    c.train.rois = ('V1', 'all')
    c.train.baselines = ()
  res = train_stage.run(c, _workdir(datadir, tmp_path))
  assert list(res['rois']) == ['V1', 'all']
  # The run's own ROI reuses its scores; V1 is a model of its own.
  own = res['scores']['model']['spearman']
  got = res['rois']['all']['scores']['model']['spearman']
  assert got['value'] == own['value'] and got['low'] == own['low']
  v1 = res['rois']['V1']['scores']
  assert np.isfinite(v1['model']['spearman']['value'])
  assert (
    v1['ceiling']['spearman']['value']
    != (res['scores']['ceiling']['spearman']['value'])
  )
  m = json.loads((tmp_path / 'rois' / 'V1' / 'metrics.jsonl').open().readline())
  assert m['step'] >= 1
  assert (tmp_path / 'figures' / 'train_rois.png').is_file()
  assert 'Target ROI by ROI' in (tmp_path / 'report.md').read_text()


def test_evaluations_without_gain():
  assert train.evals_without_gain([0.1, 0.3, 0.2, 0.25]) == 2
  assert train.evals_without_gain([0.3, 0.3]) == 1  # the first of equals
  assert train.evals_without_gain([float('nan'), 0.1]) == 0
  assert train.evals_without_gain([0.2, float('nan')]) == 1
  assert train.evals_without_gain([]) == 0


def test_a_validation_plateau_stops_the_run_and_a_rerun_stays_stopped(
  datadir, tmp_path
):
  """lr 0: validation Spearman is the same at every evaluation, so with
  patience 2 the run stops at step 3 (two evaluations without a rise) and
  scores one of its checkpoints (all equal); its rerun trains nothing
  more, and without patience the same scores after all 12 steps."""
  c = tiny(
    **{
      'train.steps': 12,
      'train.eval_every': 1,
      'train.log_every': 1,
      'ckpt.every': 1,
      'train.patience': 2,
      'optim.lr': 0.0,
    }
  )
  w = _workdir(datadir, tmp_path / 'w')
  r = train.train(c, w)
  assert r.stopped_at == 3 and r.steps == 12 and r.best_step <= 3
  assert [row['step'] for row in _params(w)] == [1, 2, 3]
  assert r.summary()['stopped_at'] == 3
  again = train.train(c, w)
  assert again.stopped_at == 3 and again.test == r.test
  assert [row['step'] for row in _params(w)] == [1, 2, 3]
  with c.unlocked():
    c.train.patience = 0
  full = train.train(c, _workdir(datadir, tmp_path / 'full'))
  assert full.stopped_at is None and full.test == r.test
