"""The command line (rdmjax.run.cli): `rdmjax --help` prints the modes, flags,
configs and main config fields, for the console script and `python -m
rdmjax.main` alike; every mistake in the flags or the config ends with one
line, `rdmjax: error: ...`, and exit code 2; a --config path that does not
exist is the shipped config of that file name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rdmjax import config_lib, stages
from rdmjax.errors import InputError
from rdmjax.run import cli

REPO = Path(__file__).resolve().parents[3]
ENV = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
# The console script's path through rdmjax.main.run(), argv[0] 'rdmjax'.
SCRIPT = (
  "import sys; sys.argv = ['rdmjax', *sys.argv[1:]]; "
  'from rdmjax.main import run; run()'
)


def _run(cmd, cwd=REPO):
  return subprocess.run(
    cmd, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120
  )


def _module(*args, cwd=REPO):
  return _run([sys.executable, '-m', 'rdmjax.main', *args], cwd)


def _console_script(*args, cwd=REPO):
  return _run([sys.executable, '-c', SCRIPT, *args], cwd)


def _installed_script(*args, cwd=REPO):
  script = Path(sys.executable).parent / 'rdmjax'
  if not script.exists():
    pytest.skip(f'no console script {script}')
  return _run([str(script), *args], cwd)


@pytest.mark.parametrize('how', [_module, _console_script, _installed_script])
def test_help_page(how, tmp_path):
  r = how('--help', cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'Traceback' not in r.stderr and 'Try --helpfull' not in r.stdout
  page = r.stdout
  assert 'representational dissimilarity' in page
  for stage in stages.STAGES:
    assert any(line.startswith(f'  {stage} ') for line in page.splitlines())
  assert 'the default, all, runs data, rdm, train' in page
  for flag in ('--workdir (required)', '--mode=all', '--jax_distributed=False'):
    assert flag in page
  assert (
    '--config=configs/default.py' in page and '--compilation_cache=' in page
  )
  c = config_lib.load_sibling(str(REPO / 'configs' / 'x.py'), 'default')
  for field in ('train.steps', 'data.root', 'model.name', 'rdm.metrics'):
    assert f'  {field}={cli._value_of(c, field)!r}' in page, field
  for name in ('default.py', 'siamese_cnn.py', 'clip_embed.py', 'bench.py'):
    assert f'  {name} ' in page
  assert 'ARG: tiny, nsd, emb=synthetic.' in page
  assert page.count('\n  rdmjax --workdir=') >= 4  # examples


def test_help_lists_fields_that_exist():
  """Every field the help page lists is in the default config (else it
  would be left out quietly), with its default."""
  config = cli.load_config(cli.default_config())
  page = cli.help_page()
  for field, _ in cli.FIELDS:
    value = cli._value_of(config, field)
    assert f'  {field}={value!r}' in page, field


ERRORS = [
  (['--config.train.stpes=10'], ['train.stpes', 'did you mean train.steps?']),
  (['--config.trian.steps=10'], ['no section trian', 'did you mean train?']),
  (['--config.train.zzz=1'], ["train's keys: alpha, baselines,"]),
  (
    ['--config.train.steps=abc'],
    ['train.steps takes an integer', '--config.train.steps=200'],
  ),
  (['--config.train.run_leaked=maybe'], ['takes True or False']),
  (
    ['--config.model.hidden=abc'],
    ["'abc' is not one of the integers model.hidden takes", '"(512,)"'],
  ),
  (
    ['--config=configs/nope.py'],
    ["'configs/nope.py' not found", 'configs/default.py, configs/siamese'],
  ),
  (
    ['--config=configs/default.py:tinyy'],
    ["'tinyy' unknown", 'did you mean tiny?', 'emb=synthetic, nsd, tiny'],
  ),
  (['--config=configs/bench.py:n=x'], ["n='x'", 'n takes an integer']),
  (['--mode=trian'], ['is not a mode', 'did you mean --mode=train?']),
  (['--workdirr=x'], ['unknown flag --workdirr', 'did you mean --workdir?']),
  (['extra'], ["unexpected argument(s) 'extra'"]),
]


@pytest.mark.parametrize(
  'args, hints', ERRORS, ids=[' '.join(a) for a, _ in ERRORS]
)
def test_a_mistake_is_one_line_and_exit_code_2(args, hints, tmp_path):
  r = _module(f'--workdir={tmp_path / "w"}', *args)
  _assert_one_line(r, hints)
  assert not (tmp_path / 'w').exists()


def test_a_missing_workdir_is_one_line(tmp_path):
  _assert_one_line(_module('--mode=synth'), ['--workdir is missing'])
  _assert_one_line(_console_script(cwd=tmp_path), ['--workdir is missing'])


def test_the_console_script_reports_mistakes_too(tmp_path):
  r = _console_script(f'--workdir={tmp_path}', '--config.train.stpes=1')
  _assert_one_line(r, ['did you mean train.steps?'])


def _assert_one_line(r, hints):
  lines = [line for line in r.stderr.splitlines() if line.strip()]
  assert r.returncode == 2, r.stderr[-3000:]
  assert len(lines) == 1, r.stderr[-3000:]
  assert lines[0].startswith('rdmjax: error: '), lines[0]
  for hint in hints:
    assert hint in lines[0], lines[0]
  assert r.stdout == ''


PARSE = """
import json, sys
from absl import flags
from ml_collections import config_flags
from rdmjax import main
from rdmjax.run import cli
rest = cli.parse_flags(sys.argv)
c = flags.FLAGS.config
print(json.dumps(dict(
  rest=rest, config=config_flags.get_config_filename(flags.FLAGS['config']),
  steps=c.train.steps, hidden=c.model.hidden, leaked=c.train.run_leaked,
  grid=c.sweep.grid, name=c.model.name)))
"""


def _parsed(*args, cwd):
  r = _run([sys.executable, '-c', PARSE, *args], cwd)
  assert r.returncode == 0, r.stderr[-3000:]
  return json.loads(r.stdout.splitlines()[-1])


def test_valid_flags_still_parse(tmp_path):
  """Overrides without --config, before it (moved first), booleans, tuples;
  a config path that does not exist here is the shipped config."""
  got = _parsed('--workdir=w', '--config.train.steps=7', cwd=REPO)
  assert got['steps'] == 7 and got['hidden'] == [512] and got['leaked']
  got = _parsed(
    '--config.train.steps=5',
    '--workdir=w',
    '--config=configs/siamese_cnn.py:tiny',
    '--noconfig.train.run_leaked',
    '--config.model.hidden=(8, 4)',
    '--config.sweep.grid=(1e-4, 3e-4)',
    cwd=tmp_path,  # no configs/ here
  )
  assert len(got['rest']) == 1  # argv[0]: nothing left over
  assert got['steps'] == 5 and got['name'] == 'siamese_cnn'
  assert got['hidden'] == [8, 4] and got['grid'] == [1e-4, 3e-4]
  assert not got['leaked']
  shipped = cli.configs_dir() / 'siamese_cnn.py'
  assert got['config'] == f'{shipped}:tiny'


def test_resolve_config(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  shipped = cli.configs_dir()
  assert cli.resolve_config('configs/default.py:tiny') == (
    f'{shipped / "default.py"}:tiny'
  )
  assert cli.resolve_config('elsewhere/bench.py') == str(shipped / 'bench.py')
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'default.py').write_text('')
  # A file that exists is the one meant, even with a shipped name.
  assert cli.resolve_config('configs/default.py:a') == 'configs/default.py:a'
  with pytest.raises(cli.UsageError, match='configs/siamese_cnn.py'):
    cli.resolve_config('mine.py')
  assert {'default.py', 'siamese_cnn.py'} <= set(cli.available_configs())


def test_config_args_are_checked():
  with pytest.raises(InputError, match='did you mean tiny.*emb=x, tiny$'):
    config_lib.parse_arg('tinyy', tiny=False, emb='x')
  with pytest.raises(InputError, match='takes an integer'):
    config_lib.parse_arg('n=a', n=0)
  with pytest.raises(InputError, match='takes True or False'):
    config_lib.parse_arg('tiny=maybe', tiny=False)
  with pytest.raises(InputError, match='takes a value: emb=VALUE'):
    config_lib.parse_arg('emb', emb='x')
  a = config_lib.parse_arg('tiny,n=3,emb=clip', tiny=False, n=0, emb='x')
  assert (a.tiny, a.n, a.emb) == (True, 3, 'clip')


def test_check_field():
  c = cli.load_config(cli.default_config())
  assert cli.check_field(c, 'train.steps') is None
  assert cli.check_field(c, 'data.synthetic.n_train') is None
  assert cli.check_field(c, 'mesh') is None
  assert 'did you mean data.synthetic.n_train?' in cli.check_field(
    c, 'data.synthetic.n_trian'
  )
  assert 'did you mean seed?' in cli.check_field(c, 'sed')
