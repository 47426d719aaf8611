"""Benchmarks: `rdmjax --mode=bench --config=configs/bench.py[:ARG]`.

  rdmjax --mode=bench --workdir=/tmp/bench --config=configs/bench.py
  rdmjax --mode=bench --workdir=/tmp/bench \
    --config=configs/bench.py:suite=rdm,n=2000,d=39548,fast
  rdmjax --mode=bench --workdir=/tmp/bench --config=configs/bench.py:tiny

ARG keys: suite (rdm, pairs, clip), n, d (0 = the default's), tiny (CI size,
seconds on CPU), fast (skip the slow scipy/rsatoolbox baselines), mesh (rdm:
also the RDM sharded over all devices; on a CPU set
XLA_FLAGS=--xla_force_host_platform_device_count=8 for 8 fake devices).
"""

from rdmjax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(
    arg, suite='rdm', n=0, d=0, tiny=False, fast=False, mesh=False
  )
  c = config_lib.load_sibling(__file__, 'default', f'tiny={arg.tiny}')
  c.bench.suite = arg.suite
  if arg.n:
    c.bench.n = arg.n
  if arg.d:
    c.bench.d = arg.d
  c.bench.mesh = arg.mesh
  if arg.fast:
    c.bench.baselines = ('numpy', 'gram', 'plain')
  return c
