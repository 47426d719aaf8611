"""Sphinx configuration for the rdmjax documentation (MyST Markdown).

Build: `sphinx-build -W -b html docs docs/_build/html`. autodoc imports the
installed package (`pip install -e '.[docs]'`), so no path is added here.
"""

import re

import rdmjax

project = 'rdmjax'
author = 'The rdmjax Authors'
copyright = 'The rdmjax Authors (Apache License 2.0)'
version = release = rdmjax.__version__

extensions = [
  'myst_parser',
  'sphinx.ext.autodoc',
  'sphinx.ext.napoleon',
]

source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', 'Thumbs.db', '.DS_Store']

# MyST: ::: fences for directives too (```{eval-rst} needs no extension);
# heading anchors, so links such as [reruns](robustness.md#reruns-are-explicit)
# resolve (and a missing one is a warning, hence an error under -W).
myst_enable_extensions = ['colon_fence']
myst_heading_anchors = 3

# Google-style docstrings (Args:, Returns:, Raises:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'

html_theme = 'furo'
html_title = f'rdmjax {release}'

# rdmjax's docstrings are plain text in Google style with Markdown habits:
# `code` in single backticks, |x| for norms, * for products and globs, and
# nested "'name': text" lists whose continuation lines hang deeper. Two
# small passes make reStructuredText read them as written (the docstrings
# stay plain text in the code).
default_role = 'code'  # `x` in a docstring is inline code, as in Markdown

_CODE_SPAN = re.compile(r'(``.+?``|`[^`]+`)')
_OPENER = re.compile(r'^\s*(:[^:]+:|\.\. |[-*+] )|::\s*$')


def _escape_markup(app, what, name, obj, options, lines):
  """Before napoleon: |, * and a trailing _ mean themselves outside
  `code`."""
  for k, line in enumerate(lines):
    parts = _CODE_SPAN.split(line)
    for p in range(0, len(parts), 2):
      text = re.sub(r'(?<!\\)([|*])', r'\\\1', parts[p])
      parts[p] = re.sub(r'(?<=\w)_(?=[^\w]|$)', r'\\_', text)  # NAME_*
    lines[k] = ''.join(parts)


def _indent(line):
  return len(line) - len(line.lstrip())


def _hanging_lists(app, what, name, obj, options, lines):
  """After napoleon: a line whose next line hangs deeper (no blank line
  between, not a field, directive, bullet or `::` line) starts a bullet
  list with its siblings at the same indentation."""
  out, k, n = [], 0, len(lines)
  while k < n:
    line = lines[k]
    nxt = lines[k + 1] if k + 1 < n else ''
    hangs = (
      line.strip()
      and nxt.strip()
      and _indent(nxt) > _indent(line)
      and not _OPENER.search(line)
    )
    if not hangs:
      out.append(line)
      k += 1
      continue
    level = _indent(line)
    if out and out[-1].strip():
      out.append('')
    while k < n and lines[k].strip() and _indent(lines[k]) >= level:
      if _indent(lines[k]) == level:
        out.append(' ' * level + '- ' + lines[k].strip())
      else:
        out.append(' ' * (level + 2) + lines[k].strip())
      k += 1
    if k < n and lines[k].strip():
      out.append('')
  lines[:] = out


def setup(app):
  app.connect('autodoc-process-docstring', _escape_markup, priority=400)
  app.connect('autodoc-process-docstring', _hanging_lists, priority=600)
