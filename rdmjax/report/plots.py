"""What every figure shares: saving, metric names, label order and colours.

The figures themselves: `rdm_plots` (data and rdm stages), `train_plots`,
`mds`, `group`. matplotlib with the Agg backend (no screen needed); every function writes a
PNG (at `DPI`) and a vector copy beside it (`vector_formats`, default PDF)
through `save_figure` (the writer process only) and returns the PNG's path.
RDM heatmaps put the images in the order of a per-image label where the
subject has one (`label_order`; the synthetic category, or the file
`rdm.labels`), drawn as a colour strip along both axes with the block
boundaries and names, else in average-linkage order (`cluster_order`).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from rdmjax import paths
from rdmjax.errors import InputError
from rdmjax.files import atomic_write, is_writer


def pyplot():
  # matplotlib, on first use: only stages that draw need it.
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  return plt


DPI = 200  # PNG resolution, dots per inch (and of images inside vectors)
# The vector copies written beside each PNG (same name, suffix .pdf, .svg):
# this tuple if set (rdmjax --vector_figures), else $RDMJAX_VECTOR_FIGURES
# (comma-separated; default none). Opt-in: a PDF costs about as much as its
# PNG again (fonts subset and embedded), and `--mode=report` makes them
# later from a finished run, for the figures a paper uses.
VECTOR_FORMATS: tuple[str, ...] | None = None
VECTOR_ENV = 'RDMJAX_VECTOR_FIGURES'
_VECTORS = ('pdf', 'svg')
# Text as text (TrueType fonts embedded in PDFs, which journals want rather
# than Type 3; SVG <text>), and no creation date: files the same each run.
_RC = {'pdf.fonttype': 42, 'svg.fonttype': 'none'}
_METADATA = {'pdf': {'CreationDate': None}, 'svg': {'Date': None}}


def vector_formats() -> tuple[str, ...]:
  """The vector formats `save_figure` writes by default (`VECTOR_FORMATS`)."""
  if VECTOR_FORMATS is not None:
    got = tuple(VECTOR_FORMATS)
    where = f'--vector_figures (plots.VECTOR_FORMATS) {",".join(got)}'
  else:
    env = os.environ.get(VECTOR_ENV, '')
    got = tuple(f.strip().lower() for f in env.split(',') if f.strip())
    where = f'{VECTOR_ENV}={env!r}'
  bad = [f for f in got if f not in _VECTORS]
  if bad:
    raise InputError(
      f'{where}: {bad} unknown; use {", ".join(_VECTORS)} (comma-separated) '
      'or nothing'
    )
  return got


def save_figure(fig, path: Path, vector: Sequence[str] | None = None) -> Path:
  """Saves (writer process only) and closes a figure: the PNG at `DPI` and
  a copy per vector format beside it (path with suffix .pdf, .svg; default
  `vector_formats()`), each through `report.atomic_write`; returns the
  PNG's path."""
  # matplotlib, on first use: only stages that draw need it.
  import matplotlib

  path = paths.path(path)
  formats = vector_formats() if vector is None else tuple(vector)
  # A figure laid out by its engine (constrained) is saved as laid out:
  # bbox_inches='tight' would draw it once more only to trim its margins.
  tight = 'tight' if fig.get_layout_engine() is None else None
  if is_writer():
    with matplotlib.rc_context(_RC):
      for fmt in ('png', *formats):
        buf = io.BytesIO()
        fig.savefig(
          buf,
          format=fmt,
          dpi=DPI,
          bbox_inches=tight,
          metadata=_METADATA.get(fmt),
          # Stored, not compressed: `_palette_png` compresses it once.
          **({'pil_kwargs': {'compress_level': 0}} if fmt == 'png' else {}),
        )
        data = _palette_png(buf.getvalue()) if fmt == 'png' else buf.getvalue()
        out = path if fmt == 'png' else path.with_suffix(f'.{fmt}')
        atomic_write(out, data)
  pyplot().close(fig)
  return path


def _palette_png(png: bytes) -> bytes:
  """A figure's PNG with 256 colours: exact where it has at most 256,
  else quantised (a heatmap of 1000 x 1000 images: about a quarter of the
  RGBA file, 0.8 MB rather than 3.3 MB, and faster to encode; pixels off
  by 2 of 255 on average). Its text chunks and dpi are kept."""
  with Image.open(io.BytesIO(png)) as im:
    im.load()
    info = {k: v for k, v in im.info.items() if isinstance(v, str)}
    dpi = im.info.get('dpi')
    rgb = im.convert('RGB')
  method = (
    Image.Quantize.MEDIANCUT  # exact for at most 256 colours
    if rgb.getcolors(256) is not None
    else Image.Quantize.FASTOCTREE
  )
  pal = rgb.quantize(256, method=method, dither=Image.Dither.NONE)
  meta = PngImagePlugin.PngInfo()
  for k, v in info.items():
    meta.add_text(k, v)
  out = io.BytesIO()
  pal.save(out, format='png', pnginfo=meta, dpi=dpi, optimize=False)
  return out.getvalue()


METRIC_LABELS = {
  'correlation': '1 - Pearson r',
  'euclidean': 'Euclidean distance',
  'sqeuclidean': 'squared Euclidean distance',
  'cosine': '1 - cosine similarity',
}


def metric_label(metric: str) -> str:
  return METRIC_LABELS.get(metric, metric)


def fmt_value(v: float) -> str:
  """An RDM value as the reference study's tables print it (3 decimals)."""
  return f'{v:.3f}' if abs(v) < 1e4 else f'{v:.4g}'


def cluster_order(heat: np.ndarray) -> np.ndarray:
  """Leaf order of average-linkage clustering of a dissimilarity matrix.

  Args:
    heat: [m, m] dissimilarities (only the upper triangle is read).

  Returns:
    [m] int, rows in dendrogram order (similar rows adjacent).
  """
  cond = squareform(np.asarray(heat, np.float64), checks=False)
  return hierarchy.leaves_list(hierarchy.linkage(cond, method='average'))


def label_key(label: str) -> tuple:
  """Sort key of labels: integers numerically, then names alphabetically."""
  try:
    return (0, int(label), '')
  except ValueError:
    return (1, 0, label)


def label_order(labels: Sequence) -> np.ndarray:
  """The images sorted by label.

  Args:
    labels: [n] a label per image (compared as strings).

  Returns:
    [n] int, a permutation: images of one label together, labels in
    `label_key` order (integers numerically, then names alphabetically),
    each label's images in index order.
  """
  labels = [str(v) for v in labels]
  rank = {c: k for k, c in enumerate(sorted(set(labels), key=label_key))}
  return np.argsort([rank[v] for v in labels], kind='stable')


def label_runs(labels: Sequence) -> list[tuple[str, int, int]]:
  """(label, start, stop) of each run of equal consecutive labels."""
  out = []
  for k, v in enumerate(labels):
    if out and out[-1][0] == v:
      out[-1] = (v, out[-1][1], k + 1)
    else:
      out.append((v, k, k + 1))
  return out


def block_labels(labels: Sequence, block: int) -> list[str]:
  """The label of each row of a heatmap of block means over `block`
  consecutive images (`analysis.display_block`): the most common label of
  its images (the first of ties)."""
  labels = [str(v) for v in labels]
  if block <= 1:
    return labels
  return [
    Counter(labels[k : k + block]).most_common(1)[0][0]
    for k in range(0, len(labels), block)
  ]


def within_label_order(heat: np.ndarray, rows: Sequence) -> np.ndarray:
  """Average-linkage order inside each run of equal row labels, the runs
  kept in place: [m] permutation of heat's rows."""
  parts = [
    a + (cluster_order(heat[a:b, a:b]) if b - a > 2 else np.arange(b - a))
    for _, a, b in label_runs(rows)
  ]
  return np.concatenate(parts).astype(int)


def label_colours(labels: Sequence) -> dict:
  """A colour (RGBA) per distinct label, in `label_key` order: tab10, tab20,
  or evenly spaced turbo above 20 labels."""
  cats = sorted({str(v) for v in labels}, key=label_key)
  k = len(cats)
  cmap = pyplot().get_cmap(
    'tab10' if k <= 10 else 'tab20' if k <= 20 else 'turbo'
  )
  return {
    c: cmap(i if k <= 20 else i / max(k - 1, 1)) for i, c in enumerate(cats)
  }


def ceiling_lines(ax, x, values, half_width: float) -> None:
  """The noise ceiling as a short line over each bar group x (NaN: none),
  one legend entry; inside the frame, unlike a large marker."""
  v = np.asarray(values, float)
  has = np.isfinite(v)
  ax.hlines(
    v[has],
    np.asarray(x)[has] - half_width,
    np.asarray(x)[has] + half_width,
    color='k',
    lw=2,
    zorder=3,
    label='noise ceiling',
  )
