"""Parses config-file arguments: `--config=configs/mlp.py:tiny,emb=clip`.

Configs import only ml_collections and this module (they load by path), as in
big_vision's `configs/common.py`. The top-level configs/ folder ships in the
wheel as rdmjax/configs/ (pyproject.toml); `rdmjax.cli.configs_dir()` finds
it, installed or in a checkout.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import ml_collections

from rdmjax.errors import InputError

_KINDS = {bool: 'True or False', int: 'an integer', float: 'a number'}


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
  import importlib.util
  import os

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
  from rdmjax import cli

  path, colon, arg = spec.partition(':')
  if not path.startswith(('configs/', '/', '.')) and not os.path.isfile(path):
    path = f'configs/{path}'
  return cli.load_config(cli.resolve_config(f'{path}{colon}{arg}'))
