"""Imports between rdmjax's rooms point one way (DESIGN.md, the tree).

A room is a top-level module or folder of rdmjax/. The graph is built from
the code (every `import`, at the top of a file or inside a function), so a
lazy import cannot hide an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / 'rdmjax'

# Lowest first: a room may import rooms of its own layer or below, never
# above. The leaf helpers come first; `__init__` (the public face) may
# import anything, as main may.
LAYERS = (
  ('errors',),
  ('paths', 'sharding', 'config_lib'),
  ('files',),
  ('rsa',),
  ('data',),
  ('models',),
  ('embed',),
  ('training',),
  ('report',),
  ('bench',),
  ('stages',),
  ('run',),
  ('main',),
  ('__init__',),
)
RANK = {room: k for k, layer in enumerate(LAYERS) for room in layer}
# Loaded on first use only, each with a comment saying so (heavy, optional).
HEAVY = ('torch', 'transformers', 'tensorboardX', 'gcsfs', 'rsatoolbox')


def _room(module: str) -> str | None:
  parts = module.split('.')
  if parts[0] != 'rdmjax':
    return None
  return parts[1] if len(parts) > 1 else '__init__'


def _module_of(path: Path) -> str:
  rel = path.relative_to(PACKAGE.parent).with_suffix('')
  parts = list(rel.parts)
  if parts[-1] == '__init__':
    parts.pop()
  return '.'.join(parts)


def _is_module(name: str) -> bool:
  if not name.startswith('rdmjax.'):
    return False
  p = PACKAGE.parent.joinpath(*name.split('.'))
  return p.with_suffix('.py').is_file() or (p / '__init__.py').is_file()


def _imports(path: Path):
  """(module imported, line, at top level) for each rdmjax import."""
  tree = ast.parse(path.read_text())
  top = set(map(id, tree.body))
  here = _module_of(path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative
        pkg = here.split('.')
        if path.name != '__init__.py':
          pkg = pkg[:-1]
        pkg = pkg[: len(pkg) - node.level + 1]
        base = '.'.join(pkg + ([base] if base else []))
      # `from rdmjax import data` imports the module rdmjax.data; `from
      # rdmjax.data import load_subject` imports rdmjax.data.
      names = [
        f'{base}.{a.name}' if _is_module(f'{base}.{a.name}') else base
        for a in node.names
      ]
    else:
      continue
    for name in names:
      yield name, node.lineno, id(node) in top


def edges() -> dict[tuple[str, str], list[str]]:
  """(room, room it imports) -> ['file:line', ...]."""
  out: dict[tuple[str, str], list[str]] = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    src = (
      _room(_module_of(path))
      if path.parent != PACKAGE
      else ('__init__' if path.stem == '__init__' else path.stem)
    )
    for name, line, _ in _imports(path):
      dst = _room(name)
      if dst is None or dst == src or dst not in RANK:
        continue
      where = f'{path.relative_to(PACKAGE.parent)}:{line}'
      out.setdefault((src, dst), []).append(where)
  return out


def test_every_room_has_a_layer():
  rooms = {p.stem for p in PACKAGE.glob('*.py')} | {
    p.name for p in PACKAGE.iterdir() if (p / '__init__.py').is_file()
  }
  rooms.discard('configs')
  assert rooms <= set(RANK), sorted(rooms - set(RANK))


def test_no_upward_import():
  up = {
    f'{a} -> {b}': w
    for (a, b), w in edges().items()
    if a in RANK and RANK[b] > RANK[a]
  }
  assert not up, up


def test_no_cycle_between_rooms():
  graph: dict[str, set[str]] = {}
  for a, b in edges():
    graph.setdefault(a, set()).add(b)
  state: dict[str, int] = {}

  def visit(n, stack):
    state[n] = 1
    for m in graph.get(n, ()):
      if state.get(m) == 1:
        pytest.fail('import cycle: ' + ' -> '.join(stack + [n, m]))
      if not state.get(m):
        visit(m, stack + [n])
    state[n] = 2

  for n in list(graph):
    if not state.get(n):
      visit(n, [])


def test_own_imports_sit_at_the_top():
  """rdmjax's own modules are imported at the top of each file: an import
  inside a function hides an edge from a reader (the graph above sees it)."""
  inner = []
  for path in sorted(PACKAGE.rglob('*.py')):
    if path == PACKAGE / '__init__.py':  # the public face: lazy by design
      continue
    for name, line, top in _imports(path):
      if not top and name.startswith('rdmjax'):
        inner.append(f'{path.relative_to(PACKAGE.parent)}:{line} {name}')
  assert not inner, inner


def test_heavy_imports_on_first_use_only():
  """torch, transformers, tensorboardX, gcsfs, rsatoolbox: never at the top
  of a module (a stage pays only for what it uses)."""
  top = []
  for path in sorted(PACKAGE.rglob('*.py')):
    for name, line, at_top in _imports(path):
      if at_top and name.split('.')[0] in HEAVY:
        top.append(f'{path.relative_to(PACKAGE.parent)}:{line} {name}')
  assert not top, top


def test_rsa_takes_no_config():
  """rsa/ is config-free: arrays in, arrays out (no parameter named
  config or cfg; a stage resolves the config once)."""
  found = []
  for path in sorted((PACKAGE / 'rsa').glob('*.py')):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        names = [a.arg for a in node.args.args + node.args.kwonlyargs]
        if {'config', 'cfg'} & set(names):
          found.append(f'{path.name}:{node.lineno} {node.name}')
  assert not found, found


# Packages a module may import inside a function (on first use, each with a
# comment saying why): heavy or optional ones a stage pays for only if used.
LAZY = (*HEAVY, 'matplotlib', 'huggingface_hub')


def test_only_heavy_packages_load_on_first_use():
  """Every import inside a function is of a heavy or optional package, with
  a comment (or 'first use' in the lines just above) saying so."""
  bad = []
  for path in sorted(PACKAGE.rglob('*.py')):
    if path == PACKAGE / '__init__.py':  # the public face: lazy by design
      continue
    src = path.read_text().splitlines()
    tree = ast.parse('\n'.join(src))
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
      if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in top:
        continue
      mod = node.module if isinstance(node, ast.ImportFrom) else None
      mod = (mod or node.names[0].name).split('.')[0]
      above = '\n'.join(src[max(0, node.lineno - 6) : node.lineno])
      said = '#' in above or 'first use' in above
      if mod not in LAZY or not said:
        bad.append(f'{path.relative_to(PACKAGE.parent)}:{node.lineno} {mod}')
  assert not bad, bad
