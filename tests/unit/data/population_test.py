"""The synthetic population: shared images by NSD id, one latent model,
each subject its own vertices and noise (issue 12's known answers)."""

import numpy as np
import pytest

from rdmjax.data import algonauts, embeddings, synthetic, synthetic_population
from rdmjax.rsa import group

SMALL = dict(
  n_subjects=3,
  n_shared=24,
  n_train=48,
  n_test=10,
  n_vertices_lh=150,
  n_vertices_rh=160,
  image_size=32,
  progress=False,
)


@pytest.fixture(scope='module')
def pop(tmp_path_factory):
  root = tmp_path_factory.mktemp('pop')
  synthetic_population.ensure_population(root, **SMALL)
  subs = {
    s: algonauts.load_subject(root, s) for s in ('subj01', 'subj02', 'subj03')
  }
  return root, subs


def test_shared_images_are_the_same_images_in_every_subject(pop):
  root, subs = pop
  ids = {s: x.nsd_ids('train') for s, x in subs.items()}
  common, rows = group.shared_images(ids)
  assert len(common) == SMALL['n_shared']
  tests = [set(x.nsd_ids('test')) for x in subs.values()]
  assert not (tests[0] & tests[1]) and not (tests[0] & set(common))
  embs = {
    s: embeddings.read(
      synthetic.extras_dir(root, s) / 'embeddings.npz', 'train', ids[s]
    )[0]
    for s in subs
  }
  a, b = 'subj01', 'subj02'
  np.testing.assert_array_equal(embs[a][rows[a]], embs[b][rows[b]])
  pa = subs[a].image_paths('train')[rows[a][0]]
  pb = subs[b].image_paths('train')[rows[b][0]]
  assert pa.read_bytes() == pb.read_bytes()
  # Each subject its own vertices.
  assert len({x.n_vertices['lh'] for x in subs.values()}) == 3


def test_subjects_agree_on_shared_images_beyond_chance(pop):
  _, subs = pop
  ids = {s: x.nsd_ids('train') for s, x in subs.items()}
  resp = {s: x.responses('all', 'train') for s, x in subs.items()}
  got = group.pairwise_consistency(resp, ids)
  m = got['matrix']
  off = m[~np.eye(3, dtype=bool)]
  assert np.all(off > 0.2), m
  # Shuffled image labels: no agreement.
  rng = np.random.default_rng(0)
  shuffled = {s: rng.permutation(v) for s, v in ids.items()}
  null = group.pairwise_consistency(resp, shuffled)['matrix']
  assert np.all(np.abs(null[~np.eye(3, dtype=bool)]) < 0.15)


def test_rewrites_only_on_other_parameters(pop):
  root, _ = pop
  before = (root / 'subj01' / 'training_split').stat().st_mtime_ns
  synthetic_population.ensure_population(root, **SMALL)
  assert (root / 'subj01' / 'training_split').stat().st_mtime_ns == before
