"""Parses config-file arguments: `--config=configs/mlp.py:tiny,emb=clip`.

Configs import only ml_collections and this module (they load by path), as in
big_vision's `configs/common.py`.
"""

from __future__ import annotations

from typing import Any

import ml_collections


def _convert(value: str, default: Any) -> Any:
  if isinstance(default, bool):
    if value.lower() in ('1', 'true', 'yes', ''):
      return True
    if value.lower() in ('0', 'false', 'no'):
      return False
    raise ValueError(f'config arg: {value!r} is not a boolean')
  if default is None:
    return value
  return type(default)(value)


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `a,b=1,c=x` against defaults; a bare name sets a bool to True.

  Args:
    arg: the text after the colon in `--config=path.py:ARG`, or None.
    **defaults: every accepted key with its default (which sets the type).

  Returns:
    A locked ConfigDict; an unknown key raises ValueError naming the known.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  for item in filter(None, (arg or '').split(',')):
    key, eq, value = item.partition('=')
    key = key.strip()
    if key not in defaults:
      raise ValueError(
        f'config arg {key!r} unknown; known: {", ".join(sorted(defaults))}'
      )
    out[key] = _convert(value.strip(), defaults[key]) if eq else True
  out.lock()
  return out


def load_sibling(
  here: str, name: str, arg: str | None = None
) -> ml_collections.ConfigDict:
  """Loads `NAME.py` next to the config file `here` and calls get_config(arg).

  Config files are not a package (they load by path), so a config that is a
  small diff of `default.py` loads it this way:
  `c = config_lib.load_sibling(__file__, 'default', 'tiny')`.
  """
  import importlib.util
  import os

  path = os.path.join(os.path.dirname(os.path.abspath(here)), f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_rdmjax_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
