"""Every `python` code block of README.md and docs/*.md runs as written.

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
DOCS = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]


def _blocks(path: Path) -> list[tuple[bool, str]]:
  return [(bool(m[1]), m[2]) for m in BLOCK.finditer(path.read_text())]


def test_the_readme_has_the_quickstart():
  runnable = [code for skip, code in _blocks(REPO / 'README.md') if not skip]
  text = '\n'.join(runnable)
  for call in (
    'load_subject',
    'kernels.rdm',
    'compare_rdms',
    'summarize',
    'embeddings.read',
    'train.train',
    'read_results',
    'to_rsatoolbox',
  ):
    assert call in text, call


@pytest.mark.slow
@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.name)
def test_code_blocks_run(doc, tmp_path):
  blocks = _blocks(doc)
  for _, code in blocks:
    compile(code, f'{doc.name} block', 'exec')  # skipped ones too
  code = '\n'.join(c for skip, c in blocks if not skip)
  if not code:
    pytest.skip(f'{doc.name} has no runnable block')
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
