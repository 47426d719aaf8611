"""Every `python` code block of README.md and docs/**/*.md runs as written.

The blocks of one file run in order, in one fresh process and an empty
folder (a later block may use an earlier one's names), as a reader would
paste them. Blocks fenced as `python skip` need real data or a network and
are only compiled.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r'^```python( skip)?\n(.*?)^```', re.S | re.M)
# The Sphinx site's pages, in any subfolder but the build output.
DOCS = [
  REPO / 'README.md',
  *sorted(
    p
    for p in (REPO / 'docs').rglob('*.md')
    if '_build' not in p.relative_to(REPO / 'docs').parts
  ),
]


def _blocks(path: Path) -> list[tuple[bool, str]]:
  return [(bool(m[1]), m[2]) for m in BLOCK.finditer(path.read_text())]


def _runnable(path: Path) -> str:
  return '\n'.join(code for skip, code in _blocks(path) if not skip)


def test_the_readme_shows_the_public_face():
  text = _runnable(REPO / 'README.md')
  for call in (
    'rdmjax.write_synthetic_subject',
    'rdmjax.load_subject',
    'rdmjax.rdm(',
    'rdmjax.compare_rdms',
    'rdmjax.noise_ceiling',
  ):
    assert call in text, call


def test_the_docs_have_the_quickstart():
  text = _runnable(REPO / 'docs' / 'getting-started.md')
  for call in (
    'load_subject',
    'rdm.rdm',
    'compare_rdms',
    'matrix_stats',
    'embeddings.read',
    'loop.train',
    'read_results',
  ):
    assert call in text, call
  assert 'to_rsatoolbox' in _runnable(REPO / 'docs' / 'rdms.md')


def test_every_code_block_compiles():
  """Blocks fenced `python skip` (real data, a network) too."""
  for doc in DOCS:
    for _, code in _blocks(doc):
      compile(code, f'{doc.name} block', 'exec')


@pytest.mark.slow
@pytest.mark.parametrize(
  'doc',
  [d for d in DOCS if _runnable(d)],
  ids=lambda p: str(p.relative_to(REPO)),
)
def test_code_blocks_run(doc, tmp_path):
  code = _runnable(doc)
  script = tmp_path / 'blocks.py'
  script.write_text(code)
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='', TQDM_DISABLE='1')
  p = subprocess.run(
    [sys.executable, str(script)],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert p.returncode == 0, p.stderr[-3000:]
