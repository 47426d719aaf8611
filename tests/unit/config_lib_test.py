"""Every config file loads, with and without `tiny`, and is consistent."""

from pathlib import Path

import pytest

from rdmjax import config_lib

CONFIGS = sorted(
  p.stem
  for p in (Path(__file__).resolve().parents[2] / 'configs').glob('*.py')
  if not p.name.startswith('_')
)
HERE = str(Path(__file__).resolve().parents[2] / 'configs' / 'x.py')
SECTIONS = ('data', 'pairs', 'model', 'optim', 'train', 'ckpt', 'mesh')


@pytest.mark.parametrize('name', CONFIGS)
@pytest.mark.parametrize('arg', [None, 'tiny'])
def test_config_loads(name, arg):
  c = config_lib.load_sibling(HERE, name, arg)
  for section in SECTIONS:
    assert section in c, f'{name}: no {section}'
  # Block batches must split over 8 devices (the test mesh) and a GPU node.
  b = c.pairs.block_size
  assert (b * (b - 1) // 2) % 8 == 0
  assert c.pairs.num_pairs % 8 == 0
  assert (c.pairs.eval_tile**2) % 8 == 0


@pytest.mark.parametrize('name', CONFIGS)
def test_tiny_is_smaller(name):
  full = config_lib.load_sibling(HERE, name, None)
  tiny = config_lib.load_sibling(HERE, name, 'tiny')
  assert tiny.train.steps < full.train.steps
  assert tiny.data.synthetic.n_train < full.data.synthetic.n_train


def test_siamese_config_matches_the_study():
  c = config_lib.load_sibling(HERE, 'siamese_cnn', 'output=sigmoid2')
  assert (c.model.name, c.data.roi, c.pairs.metric, c.train.loss) == (
    'siamese_cnn',
    'V1',
    'correlation',
    'pearson_mse',
  )
  assert c.model.output == 'sigmoid2'


def test_unknown_arg_fails():
  with pytest.raises(ValueError, match='unknown'):
    config_lib.load_sibling(HERE, 'default', 'tinny')


@pytest.mark.parametrize('arg', ['nsd', 'tiny,nsd'])
def test_nsd_arg_is_subj01_size_and_valid(arg):
  from rdmjax.data import synthetic

  c = config_lib.load_sibling(HERE, 'default', arg)
  s = c.data.synthetic
  assert (s.n_train + s.n_test, s.n_vertices_lh + s.n_vertices_rh) == (
    10000,
    39548,
  )
  assert s.image_size == 425
  synthetic._check(synthetic._params(c.data.subject, **dict(s)))
  if arg == 'nsd':  # the rest as the default
    default = config_lib.load_sibling(HERE, 'default')
    default.data.synthetic.update(dict(s))
    assert c.to_dict() == default.to_dict()
