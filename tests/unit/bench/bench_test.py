"""A tiny RDM benchmark run: the JSON lines carry context and small errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from rdmjax import bench, config_lib
from rdmjax.errors import InputError

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'x.py'


def _config(arg):
  return config_lib.load_sibling(str(CONFIGS), 'bench', arg)


@pytest.mark.bench
def test_tiny_rdm_bench_writes_json_lines(tmp_path):
  c = _config('tiny')
  c.bench.n, c.bench.d, c.bench.repeats = 64, 96, 1
  records = bench.run(c, tmp_path)
  lines = [
    json.loads(s)
    for s in (tmp_path / 'bench.jsonl').read_text().split('\n')
    if s
  ]
  assert lines == json.loads(json.dumps(records, default=str))
  names = {r['name'] for r in lines}
  assert {'numpy_f32_matmul', 'scipy', 'rdmjax_float32', 'rdmjax_bf16'} <= names
  for r in lines:
    for key in (
      'device_kind',
      'device_count',
      'process_count',
      'jax',
      'flax',
      'git',
      'config',
      'median_s',
      'min_s',
      'times',
    ):
      assert key in r, key
  by = {r['name']: r for r in lines}
  assert by['rdmjax_float32']['rel_err'] < 1e-6
  assert by['rdmjax_bf16']['rel_err'] < 1e-2
  assert by['numpy_f32_matmul']['rel_err'] < 1e-5
  assert by['rdmjax_float32']['speedup_vs_numpy'] > 0


def test_unknown_suite(tmp_path):
  c = _config('tiny')
  c.bench.suite = 'nope'
  with pytest.raises(InputError, match='nope'):
    bench.run(c, tmp_path)


@pytest.mark.bench
def test_tiny_pairs_bench_block_first_and_bounded_naive(tmp_path):
  c = _config('tiny,suite=pairs')
  c.bench.repeats = 1
  c.bench.naive_pairs = 64
  records = bench.run(c, tmp_path)
  order = [(r['variant'], r['stage']) for r in records]
  stages = ['sampler', 'step', 'end_to_end']
  assert order == [
    (v, s) for v in ('block', 'uniform', 'naive') for s in stages
  ]
  by = {(r['variant'], r['stage']): r for r in records}
  for (variant, stage), r in by.items():
    assert r['pairs_per_s'] > 0 and np.isfinite(r['loss'] or 0.0)
    if variant != 'block':
      want = by['block', stage]['pairs_per_s'] / r['pairs_per_s']
      assert r['block_speedup'] == pytest.approx(want)
  assert by['naive', 'sampler']['pairs_per_call'] == 64
  assert by['block', 'sampler']['pairs_per_call'] == 32 * 31 // 2
