"""Parses config-file arguments: `--config=configs/mlp.py:tiny,emb=clip`.

Configs import only ml_collections and this module (they load by path), as in
big_vision's `configs/common.py`. The top-level configs/ folder ships in the
wheel as rdmjax/configs/ (pyproject.toml); `configs_dir()` finds it, installed or in a checkout.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import traceback
from pathlib import Path
from typing import Any

import ml_collections

from rdmjax.errors import InputError

_KINDS = {bool: 'True or False', int: 'an integer', float: 'a number'}


# The stages of a run, one `--mode` each (a module rdmjax.stages.NAME), in
# pipeline order, which is also report.md's order of sections; PIPELINE is
# what `--mode=all` (the default) runs.
STAGES = (
  'synth',
  'data',
  'rdm',
  'embed',
  'train',
  'sweep',
  'eval',
  'group',
  'bench',
  'tfds',
  'report',
)
PIPELINE = ('data', 'rdm', 'train')
# A run's config, saved in its workdir as JSON (`rdmjax.run.workdir`).
SAVED_CONFIG = 'config.json'


class UsageError(Exception):
  """A mistake on the command line: printed as one line, exit code 2."""


# Config files.


def configs_dir() -> Path:
  """The config files: rdmjax/configs/ in an installed wheel (pyproject.toml
  maps the package rdmjax.configs to the top-level configs/), else the
  source tree's configs/ (a checkout or an editable install)."""
  here = Path(__file__).resolve().parent
  for d in (here / 'configs', here.parent / 'configs'):
    if (d / 'default.py').is_file():
      return d
  return here / 'configs'


def default_config() -> str:
  """The --config default: the shipped configs/default.py."""
  return str(configs_dir() / 'default.py')


def available_configs() -> list[str]:
  """The file names of the shipped config files."""
  return sorted(
    p.name for p in configs_dir().glob('*.py') if not p.name.startswith('_')
  )


def resolve_config(value: str) -> str:
  """`PATH[:ARG]`, with PATH as given when it exists, else the shipped config
  of its file name; UsageError names the shipped configs when neither."""
  path, colon, arg = value.partition(':')
  if os.path.isfile(path):
    return value
  shipped = configs_dir() / os.path.basename(path)
  if path.endswith('.py') and shipped.is_file():
    return f'{shipped}{colon}{arg}'
  names = ', '.join(f'configs/{n}' for n in available_configs())
  raise UsageError(
    f'--config={value}: config file {path!r} not found (relative to '
    f'{os.getcwd()}); the configs that ship with rdmjax: {names} '
    f'(in {configs_dir()})'
  )


def load_config(value: str) -> Any:
  """Runs `get_config(ARG)` of the config file `PATH[:ARG]`, as
  ml_collections' --config flag does; UsageError on any failure."""
  path, colon, arg = value.partition(':')
  try:
    spec = importlib.util.spec_from_file_location('_rdmjax_cli_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if colon else module.get_config()
  except Exception as e:  # noqa: BLE001 (any failure is reported in one line)
    here = Path(path).resolve().parent  # the config's lines, not ours
    lines = [
      f'{f.filename}, line {f.lineno}'
      for f in traceback.extract_tb(e.__traceback__)
      if Path(f.filename).parent == here
    ]
    where = f' ({lines[-1]})' if lines else ''
    if isinstance(e, InputError) and str(e).startswith('config argument'):
      raise UsageError(f'--config={_short(value)}: {e}') from e
    raise UsageError(
      f'--config={_short(value)}: loading it failed: '
      f'{type(e).__name__}: {e}{where}'
    ) from e


def _short(path: str) -> str:
  """A shipped config's path as the docs write it: configs/NAME.py."""
  d = str(configs_dir()) + os.sep
  return 'configs/' + path[len(d) :] if path.startswith(d) else path


def _convert(key: str, value: str, default: Any) -> Any:
  if isinstance(default, bool):
    if value.lower() in ('1', 'true', 'yes', ''):
      return True
    if value.lower() in ('0', 'false', 'no'):
      return False
  elif default is None or isinstance(default, str):
    return value
  else:
    try:
      return type(default)(value)
    except ValueError:
      pass
  kind = _KINDS.get(type(default), type(default).__name__)
  raise InputError(
    f'config argument {key}={value!r}: {key} takes {kind} (default {default!r})'
  )


def _shown(defaults: dict[str, Any]) -> str:
  """The keys as ARG takes them: a bool by name, others as key=default."""
  return ', '.join(
    k if v is False else f'{k}={v}' for k, v in sorted(defaults.items())
  )


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `a,b=1,c=x` against defaults; a bare name sets a bool to True.

  Args:
    arg: the text after the colon in `--config=path.py:ARG`, or None.
    **defaults: every accepted key with its default (which sets the type).

  Returns:
    A locked ConfigDict. An unknown key or a value of the wrong type raises
    InputError (a ValueError) that names the closest key and the known.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  for item in filter(None, (arg or '').split(',')):
    key, eq, value = item.partition('=')
    key = key.strip()
    if key not in defaults:
      close = difflib.get_close_matches(key, list(defaults), n=1)
      hint = f'did you mean {close[0]}? ' if close else ''
      raise InputError(
        f'config argument {key!r} unknown; {hint}this config takes: '
        f'{_shown(defaults)}'
      )
    default = defaults[key]
    if not eq and not isinstance(default, bool) and default is not None:
      raise InputError(
        f'config argument {key!r} takes a value: {key}=VALUE '
        f'(default {default!r})'
      )
    out[key] = _convert(key, value.strip(), default) if eq else True
  out.lock()
  return out


def load_sibling(
  here: str, name: str, arg: str | None = None
) -> ml_collections.ConfigDict:
  """Loads `NAME.py` next to the config file `here` and calls get_config(arg).

  Config files load by path (from a checkout's configs/ or an installed
  rdmjax/configs/), so a config that is a small diff of `default.py` loads
  it this way:
  `c = config_lib.load_sibling(__file__, 'default', 'tiny')`.
  """
  path = os.path.join(os.path.dirname(os.path.abspath(here)), f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_rdmjax_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(spec: str = 'default.py') -> ml_collections.ConfigDict:
  """A shipped (or your own) config from Python, as `--config=SPEC` gives.

  spec: `NAME.py[:ARG]` (a shipped config: default.py, siamese_cnn.py,
  clip_embed.py, bench.py) or a path to a config file, with its argument:
  `config_lib.get_config('default.py:tiny')`. The result is unlocked: set
  fields as attributes (`c.train.steps = 50`).
  """
  path, colon, arg = spec.partition(':')
  if not path.startswith(('configs/', '/', '.')) and not os.path.isfile(path):
    path = f'configs/{path}'
  return load_config(resolve_config(f'{path}{colon}{arg}'))
