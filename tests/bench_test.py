"""A tiny RDM benchmark run: the JSON lines carry context and small errors."""

import json
from pathlib import Path

import pytest

from rdmjax import bench, config_lib
from rdmjax.errors import InputError

CONFIGS = Path(__file__).resolve().parent.parent / 'configs' / 'x.py'


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
