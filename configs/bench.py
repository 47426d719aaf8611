"""Benchmarks: `rdmjax --mode=bench --config=configs/bench.py[:ARG]`.

  rdmjax --mode=bench --workdir=/tmp/bench --config=configs/bench.py
  rdmjax --mode=bench --workdir=/tmp/bench \
    --config=configs/bench.py:suite=rdm,n=2000,d=39548,fast
  rdmjax --mode=bench --workdir=/tmp/bench --config=configs/bench.py:tiny

  rdmjax --mode=bench --workdir=/tmp/bench --config=configs/bench.py:suite=compare

ARG keys: suite (rdm, pairs, clip, compare), n, d (0 = the default's), tiny
(CI size, seconds on CPU), fast (skip the slow scipy/rsatoolbox baselines),
mesh (rdm: also the RDM sharded over all devices; on a CPU set
XLA_FLAGS=--xla_force_host_platform_device_count=8 for 8 fake devices).
suite=compare has its own section, bench.compare (below; n: its one size).
"""

import ml_collections

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
  if arg.suite == 'compare':
    c.bench.compare = _compare(arg)
  return c


def _compare(arg):
  """The compare suite's knobs (rdmjax.bench.compare; its DEFAULTS)."""
  cc = ml_collections.ConfigDict()
  cc.sizes = (30,) if arg.tiny else (1000, 10000)  # images per RDM
  if arg.n:
    cc.sizes = (arg.n,)
  cc.k = 4  # model RDMs
  cc.n_subjects = 8  # subjects' RDMs
  cc.n_boot = 20 if arg.tiny else 1000  # bootstrap draws over images
  cc.dtypes = ('float32', 'float64')  # rdmjax's inputs (the same values)
  cc.seed = 0  # the random RDMs
  cc.boot_repeats = 1  # timed calls of compare_models after the first
  # (0: one call, compiles included)
  cc.boot_sizes = cc.sizes if (arg.tiny or arg.n) else (1000,)  # see DEFAULTS
  cc.boot_dtypes = ('float32',)
  # rsatoolbox's eval_bootstrap_pattern, scaled to n_boot: draws timed
  # (0: two, then as many as fit in rsa_budget_s, at most rsa_max_draws);
  # not run where two draws would take over rsa_probe_max_s (estimated from
  # a smaller n instead).
  cc.rsa_draws = 0
  cc.rsa_budget_s = 60.0
  cc.rsa_max_draws = 5 if arg.tiny else 20
  cc.rsa_probe_max_s = 600.0
  return cc
