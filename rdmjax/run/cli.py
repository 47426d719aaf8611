"""The `rdmjax` command line: its help page, config files and one-line errors.

`rdmjax.main.run()` parses the flags with `parse_flags`, which
  * prints `help_page()` for --help (or -h) and exits with code 0, the same
    page for the `rdmjax` script and for `python -m rdmjax.main`;
  * finds the config file: `--config=configs/NAME.py[:ARG]` is that path
    when it exists, else the config of that file name shipped with rdmjax
    (`configs_dir()`: an installed wheel's rdmjax/configs/, a checkout's
    top-level configs/), so the documented commands run from any folder after
    `pip install .`;
  * ends every mistake in the flags or the config (an unknown or mistyped
    field or section, a wrong type, a missing config file, a bad config
    argument, an unknown mode, no --workdir, an unknown flag) with one line
    on stderr, `rdmjax: error: ...` naming the fix, and exit code 2.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

import ml_collections
from absl import flags

from rdmjax import stages
from rdmjax.config_lib import (
  UsageError,
  _short,
  available_configs,
  configs_dir,
  default_config,
  load_config,
  resolve_config,
)

PROG = 'rdmjax'
WIDTH = 80
HELP_ARGS = ('--help', '-help', '--helpshort', '-helpshort', '-h', '--h', '-?')

# The config fields the help page lists, with their defaults read from the
# default config (a field it lacks is left out; tests/cli_test.py checks).
FIELDS = (
  ('data.root', "folder that holds subjNN/ ('' = write a synthetic subject)"),
  ('data.subject', 'the subject analysed'),
  ('data.subjects', "a group run: 'all' or 'subj01,subj02' ('' = one)"),
  ('data.roi', "ROI of the training targets: a name, union, class or 'all'"),
  (
    'data.embeddings',
    "model input: 'synthetic', 'clip' (--mode=embed), a path",
  ),
  ('rdm.rois', 'ROIs of the RDM analysis'),
  ('rdm.metrics', 'dissimilarities of the RDM analysis'),
  ('pairs.metric', "training target: 'correlation' or 'euclidean'"),
  ('pairs.sampler', "pair batches: 'block' or 'uniform'"),
  ('model.name', "'mlp', 'concat_mlp' or 'siamese_cnn'"),
  ('model.hidden', 'MLP hidden widths'),
  ('optim.lr', 'learning rate'),
  ('train.steps', 'training steps'),
  ('train.loss', "'mse', 'pearson_mse', 'soft_spearman', 'pairwise_rank'"),
  ('train.eval_every', 'steps between validation scores'),
  ('train.run_leaked', 'also train on leaked pairs, for the report'),
  ('ckpt.every', 'steps between checkpoints'),
  ('seed', 'seed of the splits, the sampling and the initialisation'),
  ('resume', "a rerun on a workdir: 'auto' or 'overwrite'"),
)

EXAMPLES = (
  ('the whole pipeline on a synthetic subject', 'rdmjax --workdir=/tmp/rdmjax'),
  (
    'seconds on a CPU: the tiny config, 100 training steps',
    'rdmjax --workdir=/tmp/tiny --config=configs/default.py:tiny \\\n'
    '  --config.train.steps=100',
  ),
  (
    'real data (the Algonauts 2023 layout)',
    'rdmjax --workdir=runs/subj01 --config.data.subject=subj01 \\\n'
    '  --config.data.root=/data/algonauts_2023_challenge_data',
  ),
  (
    "the study's Siamese CNN, training only",
    'rdmjax --workdir=runs/cnn --mode=train --config=configs/siamese_cnn.py',
  ),
  (
    'every subject of the synthetic population, then the group section',
    'rdmjax --workdir=runs/group --config.data.subjects=all',
  ),
)


def fail(message: str) -> NoReturn:
  """Prints `rdmjax: error: MESSAGE` as one line on stderr; exit code 2."""
  line = ' '.join(str(message).split())
  print(f'{PROG}: error: {line}', file=sys.stderr, flush=True)
  sys.exit(2)


def _config_args(path: Path) -> list[str]:
  """The ARG keys of a config file (its config_lib.parse_arg call), read
  without running it: `tiny`, `emb=synthetic`, ..."""
  try:
    tree = ast.parse(path.read_text())
  except (OSError, SyntaxError, ValueError):
    return []
  for node in ast.walk(tree):
    func = getattr(node, 'func', None)
    name = getattr(func, 'attr', None) or getattr(func, 'id', None)
    if isinstance(node, ast.Call) and name == 'parse_arg':
      out = []
      for kw in node.keywords:
        try:
          default = ast.literal_eval(kw.value)
        except ValueError:
          default = None
        shown = repr(default) if default == '' else default
        out.append(kw.arg if default is False else f'{kw.arg}={shown}')
      return out
  return []


def _docline(path: str | None) -> str:
  """The first paragraph of a module's docstring, as one line."""
  try:
    doc = ast.get_docstring(ast.parse(Path(path).read_text())) or ''
  except (OSError, SyntaxError, TypeError, ValueError):
    return ''
  return ' '.join(doc.split('\n\n')[0].split()).replace('`', '')


# Config fields.


def check_field(config: Any, field: str) -> str | None:
  """None if `--config.FIELD` names a field of config, else the error: the
  closest key at the level where FIELD went wrong (difflib), or that
  level's keys."""
  parts = field.split('.')
  node = config
  for i, part in enumerate(parts):
    key = part.split('[', 1)[0]
    if not isinstance(node, ml_collections.ConfigDict):
      return None  # inside a dict or a tuple: ml_collections checks it
    if key in node:
      node = node[key]
      continue
    where = '.'.join(parts[:i])
    full = lambda k, w=where: f'{w}.{k}' if w else k  # noqa: E731
    kind = 'section' if i < len(parts) - 1 else 'field'
    keys = sorted(node.keys())
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if close:
      hint = f'did you mean {full(close[0])}?'
    else:
      level = f"{where}'s keys" if where else 'its sections and fields'
      hint = f'{level}: {", ".join(keys)}'
    return (
      f'--config.{field}: the config has no {kind} {full(key)}; {hint} '
      f'(rdmjax --help lists the main fields)'
    )
  return None


def _overrides(argv: list[str]) -> list[str]:
  """The fields of `--config.FIELD=VALUE` arguments (as ml_collections finds
  them: `--noconfig.FIELD` too)."""
  out = []
  for arg in argv[1:]:
    if arg == '--':
      break
    name = arg.lstrip('-').split('=', 1)[0]
    if arg.startswith('-') and name.startswith(('config.', 'noconfig.')):
      out.append(name.split('.', 1)[1])
  return out


def _value_of(config: Any, field: str) -> Any:
  node = config
  for part in field.split('.'):
    node = node[part.split('[', 1)[0]]
  return node


def _type_hint(config: Any, field: str) -> str:
  """What --config.FIELD takes, with the config's value as the example."""
  try:
    value = _value_of(config, field)
  except (KeyError, AttributeError, TypeError, IndexError):
    return ''
  if isinstance(value, bool):
    return f'{field} takes True or False (the config has {value})'
  if isinstance(value, tuple | list):
    return (
      f'{field} takes a tuple, e.g. --config.{field}="{tuple(value)!r}" '
      f'(the config has {tuple(value)!r})'
    )
  kind = {int: 'an integer', float: 'a number', str: 'a string'}.get(
    type(value), type(value).__name__
  )
  return f'{field} takes {kind}, e.g. --config.{field}={value!r}'


def check_elements(default: Any, config: Any, field: str) -> str | None:
  """None if the tuple --config.FIELD holds what the default config's tuple
  does (integers, numbers or strings), else the error. ml_collections checks
  a tuple's type, not its elements' (`--config.model.hidden=abc`)."""
  try:
    old, new = _value_of(default, field), _value_of(config, field)
  except (KeyError, AttributeError, TypeError, IndexError):
    return None
  if not isinstance(old, tuple | list) or not old:
    return None
  for kind, ok, name in (
    (int, (int,), 'integers'),
    (float, (int, float), 'numbers'),
    (str, (str,), 'strings'),
  ):
    if all(type(x) is kind for x in old):
      if all(isinstance(x, ok) and not isinstance(x, bool) for x in new):
        return None
      bad = next(x for x in new if not isinstance(x, ok) or type(x) is bool)
      return (
        f'--config.{field}: {bad!r} is not one of the {name} {field} takes; '
        f'e.g. --config.{field}="{tuple(old)!r}" (the config\'s value)'
      )
  return None


# Flags.


def _flag_error(e: flags.Error, argv: list[str], config: Any) -> str:
  """One line for an error of absl's flag parsing."""
  text = ' '.join(str(e).split())
  if isinstance(e, flags.UnrecognizedFlagError):
    name = e.flagname
    names = [n for n in flags.FLAGS if not n.startswith('config.')]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f': did you mean --{close[0]}?' if close else ''
    return f'unknown flag --{name}{hint} (rdmjax --help lists the flags)'
  if not text.startswith('flag --'):
    return f'{text} (rdmjax --help)'
  name = text[len('flag --') :].split('=', 1)[0]
  given = [
    a.split('=', 1)[1] for a in argv if a.lstrip('-').startswith(name + '=')
  ]
  value = given[-1] if given else text[len(f'flag --{name}=') :].split(': ')[0]
  reason = text.split(': ', 1)[1] if ': ' in text else text
  if name == 'workdir' and 'other than None' in text:
    return (
      '--workdir is missing: name the folder the outputs go to, e.g. '
      '--workdir=/tmp/rdmjax (rdmjax --help)'
    )
  if name == 'mode':
    modes = ('all', *stages.STAGES)
    close = difflib.get_close_matches(value, modes, n=1)
    hint = f'did you mean --mode={close[0]}? ' if close else ''
    return f'--mode={value} is not a mode; {hint}modes: {", ".join(modes)}'
  if name.startswith('config.'):
    field = name[len('config.') :]
    hint = _type_hint(config, field)
    return f'--{name}={value}: {hint or reason}'
  return f'--{name}={value}: {reason} (rdmjax --help)'


def _place_config(argv: list[str]) -> tuple[list[str], str | None]:
  """argv with the last --config's path resolved (`resolve_config`) and that
  --config first (ml_collections wants it before --config.FIELD=...), and
  its value; None when argv sets no --config."""
  value, rest, i = None, [argv[0]], 1
  while i < len(argv):
    arg = argv[i]
    if arg == '--':
      rest += argv[i:]
      break
    if arg in ('--config', '-config') and i + 1 < len(argv):
      value, i = argv[i + 1], i + 2
      continue
    if arg.startswith(('--config=', '-config=')):
      value = arg.split('=', 1)[1]
    else:
      rest.append(arg)
    i += 1
  if value is None:
    return list(argv), None
  value = resolve_config(value)
  return [rest[0], f'--config={value}', *rest[1:]], value


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flags_parser for `app.run`: --help, config files, and every
  mistake as one line with exit code 2 (see the module docstring)."""
  argv = list(argv)
  try:
    argv = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)
  except flags.Error as e:
    fail(f'{" ".join(str(e).split())}')
  head = argv[: argv.index('--')] if '--' in argv else argv
  if any(a in HELP_ARGS or a.split('=')[0] in HELP_ARGS for a in head[1:]):
    print(help_page())
    sys.exit(0)
  try:
    argv, value = _place_config(argv)
    if value is None and flags.FLAGS['config'].default is None:
      # rdmjax.main could not load the default config when it defined
      # --config (a bad --config.FIELD): load it now, to report that.
      value = default_config()
      argv.insert(1, f'--config={value}')
    config = load_config(value or default_config())
    for field in _overrides(argv):
      if error := check_field(config, field):
        raise UsageError(error)
  except UsageError as e:
    fail(str(e))
  # ml_collections reads the --config.FIELD overrides from sys.argv.
  sys.argv[:] = argv
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(_flag_error(e, argv, config))
  except Exception as e:  # noqa: BLE001 (ml_collections: KeyError, ...)
    fail(f'{type(e).__name__}: {str(e).splitlines()[0]} (rdmjax --help)')
  for field in _overrides(argv):
    if error := check_elements(config, flags.FLAGS['config'].value, field):
      fail(error)
  if len(rest) > 1:
    fail(
      f'unexpected argument(s) {" ".join(rest[1:])!r}: rdmjax takes flags '
      'only, e.g. --config.train.steps=10 (rdmjax --help)'
    )
  return rest


# The help page.


def _lines(text: str, indent: str = '', first: str = '') -> list[str]:
  """text wrapped to WIDTH (a path is never broken)."""
  return textwrap.wrap(
    text,
    WIDTH,
    initial_indent=first or indent,
    subsequent_indent=indent,
    break_long_words=False,
    break_on_hyphens=False,
  )


def _wrap(text: str, indent: int, first: str) -> str:
  """first, then text wrapped to WIDTH at column indent (from the next line
  when first is too long)."""
  pad = ' ' * indent
  head = first.ljust(indent) if len(first) < indent else pad
  lines = _lines(text, pad, head) or [first]
  return '\n'.join(lines if len(first) < indent else [first, *lines])


def _flag_line(name: str) -> str:
  """`--name=DEFAULT` (`--workdir (required)`), then the flag's help."""
  flag = flags.FLAGS[name]
  if name == 'config':  # a path, or the config loaded from it
    path = getattr(flag, 'default_unparsed', None) or flag.default
    shown = (
      f'--config={_short(path if isinstance(path, str) else default_config())}'
    )
  elif flag.default is None:
    shown = f'--{name} (required)'
  else:
    shown = f'--{name}={flag.default}'
  text = ' '.join(flag.help.split())
  if text.startswith('<'):  # an enum's values, shown by the modes above
    text = text.split('>: ', 1)[-1]
  return _wrap(text, 6, f'  {shown}')


def help_page() -> str:
  """The --help page: what rdmjax does, its modes, main flags, config files,
  main config fields (their defaults from the default config) and
  examples."""
  out = [
    'rdmjax: representational dissimilarity of fMRI responses to natural',
    'scenes in JAX: RDMs per ROI, CLIP embeddings, models that predict RDMs.',
    '',
    'usage: rdmjax --workdir=DIR [--mode=MODE] [--config=FILE.py[:ARG]]',
    '              [--config.SECTION.FIELD=VALUE ...]',
    '       (or python -m rdmjax.main ...)',
    '',
    f'modes (--mode; the default, all, runs {", ".join(stages.PIPELINE)}):',
  ]
  for name in stages.STAGES:
    spec = importlib.util.find_spec(f'rdmjax.stages.{name}')
    line = _docline(spec.origin if spec else None)
    line = line.split(': ', 1)[1] if line.startswith('--mode=') else line
    out.append(_wrap(line, 10, f'  {name}'))
  out += ['', 'flags (with their defaults):']
  for name in (
    'workdir',
    'mode',
    'config',
    'jax_distributed',
    'compilation_cache',
    'vector_figures',
  ):
    if name not in flags.FLAGS:
      continue
    out.append(_flag_line(name))
  # absl's flag; rdmjax shows warnings only unless it is given (main.py).
  out.append(
    _wrap(
      'Not given: warnings only (no INFO logs of rdmjax or of the libraries '
      'it uses); 0: INFO logs too; 1: debug (-v N).',
      6,
      '  --verbosity=N',
    )
  )
  out += [
    '',
    *_lines(
      'configs (--config=configs/NAME.py[:ARG,KEY=VALUE]; a path that does not '
      f'exist is the shipped config of that file name, from {configs_dir()}):'
    ),
  ]
  for name in available_configs():
    path = configs_dir() / name
    args = _config_args(path)
    doc = _docline(str(path)).split('. ')[0].rstrip('.')
    text = f'{doc}. ARG: {", ".join(args)}.' if args else f'{doc}.'
    out.append(_wrap(text, 18, f'  {name}'))
  out += [
    '',
    'main config fields (--config.FIELD=VALUE; defaults of default.py):',
  ]
  try:
    config = load_config(default_config())
  except UsageError as e:
    config = None
    out.append(f'  (not loaded: {e})')
  for field, text in FIELDS if config is not None else ():
    try:
      value = _value_of(config, field)
    except (KeyError, AttributeError):
      continue
    value = repr(tuple(value) if isinstance(value, list) else value)
    out.append(_wrap(text, 22, f'  {field}={value}'))
  out += ['', 'examples:']
  for what, cmd in EXAMPLES:
    out.append(f'  # {what}')
    out += [f'  {line}' for line in cmd.splitlines()]
  out += [
    '',
    'Mistakes in the flags or the config end with one line, rdmjax: error:,',
    'and exit code 2. rdmjax --helpfull lists every flag (absl and JAX too).',
  ]
  return '\n'.join(out)
