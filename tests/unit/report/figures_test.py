"""Figures ready for a paper: 200-dpi PNGs with a PDF beside them, every
colour bar labelled, no overlapping text, RDMs ordered by a per-image label
(`report.plots.label_order`, the file `rdm.labels`)."""

import itertools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from rdmjax import config_lib
from rdmjax.data import inputs  # noqa: E402
from rdmjax.errors import InputError
from rdmjax.report import group as group_report
from rdmjax.report import plots, rdm_plots, train_plots
from rdmjax.rsa import analysis

REPO = Path(__file__).resolve().parents[3]


def _fig(size=(3.0, 2.0)):
  fig, ax = plots.pyplot().subplots(figsize=size, layout='constrained')
  ax.plot([0, 1], [0, 1])
  ax.set_xlabel('x')
  return fig


def test_save_figure_writes_a_200_dpi_png_and_a_pdf(tmp_path):
  out = plots.save_figure(_fig(), tmp_path / 'f.png', vector=('pdf',))
  assert out == tmp_path / 'f.png'
  with Image.open(out) as im:
    assert im.format == 'PNG'
    np.testing.assert_allclose(im.info['dpi'], (200, 200), atol=0.01)
    # The 3 x 2 in canvas at 200 dpi, give or take the tight bbox's pad.
    w, h = im.size
    assert abs(w - 600) <= 40 and abs(h - 400) <= 40, im.size
  pdf = (tmp_path / 'f.pdf').read_bytes()
  assert pdf.startswith(b'%PDF')
  assert b'/CreationDate' not in pdf  # the same bytes every run
  assert b'FontFile2' in pdf  # TrueType (Type 42) text, not Type 3
  # The atomic writes leave no temporary file behind.
  assert sorted(p.name for p in tmp_path.iterdir()) == ['f.pdf', 'f.png']


def test_vector_formats_switch(tmp_path, monkeypatch):
  monkeypatch.setenv(plots.VECTOR_ENV, 'pdf, SVG')
  plots.save_figure(_fig(), tmp_path / 'a.png')
  assert (tmp_path / 'a.pdf').read_bytes().startswith(b'%PDF')
  assert b'<svg' in (tmp_path / 'a.svg').read_bytes()[:2000]
  monkeypatch.setenv(plots.VECTOR_ENV, '')
  plots.save_figure(_fig(), tmp_path / 'b.png')
  assert not (tmp_path / 'b.pdf').exists() and (tmp_path / 'b.png').is_file()
  monkeypatch.setattr(plots, 'VECTOR_FORMATS', ('pdf',))  # beats the env
  plots.save_figure(_fig(), tmp_path / 'c.png')
  assert (tmp_path / 'c.pdf').is_file()
  monkeypatch.setattr(plots, 'VECTOR_FORMATS', None)
  monkeypatch.setenv(plots.VECTOR_ENV, 'pdf,eps')
  with pytest.raises(InputError, match='eps'):
    plots.save_figure(_fig(), tmp_path / 'd.png')


def test_label_order_puts_each_label_together():
  rng = np.random.default_rng(0)
  labels = list(rng.choice(['face', 'car', 'tree', 'house'], 200))
  order = plots.label_order(labels)
  assert sorted(order.tolist()) == list(range(200))  # a permutation
  got = [labels[k] for k in order]
  runs = plots.label_runs(got)
  assert len(runs) == len(set(labels))  # one block per label
  assert [v for v, _, _ in runs] == ['car', 'face', 'house', 'tree']
  for v, a, b in runs:  # each block: its images in index order
    idx = order[a:b]
    assert np.all(np.diff(idx) > 0)
    assert set(idx) == {k for k, lab in enumerate(labels) if lab == v}
  # Integer labels sort numerically, before names.
  ints = [10, 2, 'x', 2, 1, 10]
  assert [str(ints[k]) for k in plots.label_order(ints)] == [
    '1',
    '2',
    '2',
    '10',
    '10',
    'x',
  ]


def test_block_labels_and_within_label_order():
  labels = ['a'] * 7 + ['b'] * 2 + ['c'] * 6
  assert plots.block_labels(labels, 1) == labels
  # Blocks of 4 images: a a a a | a a a b | b c c c | c c c
  assert plots.block_labels(labels, 4) == ['a', 'a', 'c', 'c']
  rng = np.random.default_rng(1)
  x = rng.normal(size=(15, 5))
  heat = np.linalg.norm(x[:, None] - x[None], axis=-1)
  order = plots.within_label_order(heat, labels)
  assert sorted(order.tolist()) == list(range(15))
  # The label blocks stay in place.
  assert [labels[k] for k in order] == labels


def test_display_matrix_orders_before_block_means():
  rng = np.random.default_rng(2)
  n = 103
  r = rng.random((n, n)).astype(np.float32)
  r = r + r.T
  order = rng.permutation(n)
  want = r[np.ix_(order, order)]
  np.testing.assert_array_equal(
    analysis.display_matrix(r, n, order=order), want
  )
  got = analysis.display_matrix(r, n - 1, 10, order=order)
  np.testing.assert_allclose(
    got, np.asarray(analysis._block_mean(want, 10)), rtol=1e-6
  )
  b = analysis.display_block(n, n - 1, 10)
  assert b == 11 and got.shape[0] == -(-n // b)
  assert analysis.display_block(n, n, 10) == 1


@pytest.mark.parametrize('suffix', ['.txt', '.csv'])
def test_read_labels_text(tmp_path, suffix):
  f = tmp_path / f'labels{suffix}'
  f.write_text('person\nanimal \nperson\nvehicle\n\n')  # trailing blanks ok
  assert inputs.read_labels(f, 4) == ['person', 'animal', 'person', 'vehicle']
  with pytest.raises(InputError, match='4 labels for the 5 images'):
    inputs.read_labels(f, 5)
  f.write_text('person\n\nanimal\n')
  with pytest.raises(InputError, match='line 2 is empty'):
    inputs.read_labels(f, 3)


def test_read_labels_npy(tmp_path):
  f = tmp_path / 'labels.npy'
  np.save(f, np.array(['a', 'b', 'a']))
  assert inputs.read_labels(f, 3) == ['a', 'b', 'a']
  np.save(f, np.array([3, 1, 3]))
  assert inputs.read_labels(f, 3) == ['3', '1', '3']
  with pytest.raises(InputError, match='3 labels for the 2 images'):
    inputs.read_labels(f, 2)
  np.save(f, np.zeros((3, 2)))
  with pytest.raises(InputError, match='shape'):
    inputs.read_labels(f, 3)
  np.save(f, np.array(['a', None, 'b'], dtype=object))
  with pytest.raises(InputError, match='1-D array of strings'):
    inputs.read_labels(f, 3)
  with pytest.raises(InputError, match='no such file'):
    inputs.read_labels(tmp_path / 'missing.txt', 3)


def test_image_labels_reads_rdm_labels(tmp_path):
  """rdm.labels wins over the synthetic category; {subject} and {split}
  in its path are filled in; rows pick the analysed images."""
  config = config_lib.load_sibling(
    str(REPO / 'configs' / 'x.py'), 'default', 'tiny'
  )
  assert config.rdm.labels == ''
  config.rdm.labels = str(tmp_path / '{subject}_{split}.txt')
  (tmp_path / 'subj02_train.txt').write_text('a\nb\nc\nd\ne\n')
  subject = SimpleNamespace(name='subj02', n_images=lambda split: 5)
  got = inputs.image_labels(config, tmp_path, subject, 'train', [3, 1])
  assert got == ['d', 'b']
  subject = SimpleNamespace(name='subj02', n_images=lambda split: 6)
  with pytest.raises(InputError, match='5 labels for the 6 train images'):
    inputs.image_labels(config, tmp_path, subject, 'train')


def _captured(monkeypatch):
  """Figures handed to save_figure, drawn but not written."""
  figs = []

  def capture(fig, path, vector=None):
    fig.canvas.draw()
    figs.append(fig)
    return path

  for mod in (plots, rdm_plots, train_plots):
    monkeypatch.setattr(mod, 'save_figure', capture)
  return figs


def _rdm_with_labels(n=90, cats=('car', 'face', 'tree')):
  rng = np.random.default_rng(3)
  labels = list(rng.choice(cats, n))
  z = rng.normal(size=(n, 8)) + 3 * np.eye(8)[[cats.index(v) for v in labels]]
  order = plots.label_order(labels)
  z = z[order]
  heat = np.linalg.norm(z[:, None] - z[None], axis=-1)
  return heat, [labels[k] for k in order]


def _texts(fig):
  """Every drawn, non-empty text of a drawn figure, with its extent."""
  r = fig.canvas.get_renderer()
  hidden = set()  # tick labels outside the view: not drawn
  for ax in fig.axes:
    for axis in (ax.xaxis, ax.yaxis):
      lo, hi = sorted(axis.get_view_interval())
      for tick in axis.get_major_ticks() + axis.get_minor_ticks():
        if not lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
          hidden |= {tick.label1, tick.label2}
  return [
    (t.get_text(), t.get_window_extent(r))
    for t in set(fig.findobj(Text))
    if t.get_visible() and t.get_text().strip() and t not in hidden
  ]


def _overlapping(fig):
  texts = _texts(fig)
  return [
    (a, b)
    for (a, ea), (b, eb) in itertools.combinations(texts, 2)
    if ea.width > 0 and eb.width > 0 and ea.overlaps(eb)
  ]


def test_colour_bars_labelled_and_no_text_overlaps(tmp_path, monkeypatch):
  figs = _captured(monkeypatch)
  heat, rows = _rdm_with_labels()
  n = len(rows)
  vlim = (1.0, 6.0)
  rdm_plots.rdm_heatmap(
    heat, n=n, roi='V1', metric='euclidean', vlim=vlim, path=tmp_path / 'a'
  )
  rdm_plots.rdm_heatmap(
    heat,
    n=n,
    roi='V1',
    metric='correlation',
    vlim=vlim,
    path=tmp_path / 'b',
    rows=rows,
  )
  rdm_plots.rdm_grid(
    {
      ('V1', 'correlation'): (heat, n, vlim, rows),
      ('V1', 'sqeuclidean'): (heat, n, vlim, rows),
      ('all', 'cosine'): (heat, n, vlim),
    },
    tmp_path / 'c',
  )
  ci = {'spearman': 0.2, 'interval': (0.1, 0.3)}
  rsa = {
    (roi, m): ({'synthetic': ci, 'clip': ci}, {'spearman': 0.5})
    for roi in ('V1', 'all')
    for m in ('correlation', 'sqeuclidean', 'cosine')
  }
  rdm_plots.rsa_bars(rsa, tmp_path / 'd')
  t = heat[:20, :20]
  train_plots.rdm_side_by_side(
    t, t, {'r2': 0.123, 'spearman': 0.456}, tmp_path / 'e'
  )
  names = [f'subj0{k}' for k in range(1, 9)]
  m = np.random.default_rng(0).random((8, 8))
  group_report.transfer_figure({'subjects': names, 'matrix': m}, tmp_path / 'f')
  assert len(figs) == 6
  for fig in figs:
    bars = [a for a in fig.axes if hasattr(a, '_colorbar')]
    for cax in bars:
      assert cax.get_ylabel().strip(), fig.texts or fig.axes[0].get_title()
    assert _overlapping(fig) == [], fig.axes[0].get_title()
  assert len([a for a in figs[2].axes if hasattr(a, '_colorbar')]) == 3
  # The grid by label: the category names at the block centres.
  ticks = [t.get_text() for t in figs[2].axes[0].get_yticklabels()]
  assert ticks == ['car', 'face', 'tree']


def test_rsa_legend_outside_the_frame(tmp_path, monkeypatch):
  """The ceiling's legend entry (once a 30-point marker) stays clear of
  the axes' frame."""
  figs = _captured(monkeypatch)
  rsa = {('V1', 'correlation'): ({'s': {'spearman': 0.2}}, {'spearman': 0.6})}
  rdm_plots.rsa_bars(rsa, tmp_path / 'r')
  (fig,) = figs
  ax = fig.axes[0]
  r = fig.canvas.get_renderer()
  leg = ax.get_legend()
  assert [t.get_text() for t in leg.get_texts()] == ['noise ceiling', 's']
  assert leg.get_window_extent(r).x0 >= ax.get_window_extent(r).x1
  box = leg.handlelength * leg.prop.get_size_in_points()
  for h in leg.legend_handles:
    if hasattr(h, 'get_sizes'):  # a marker: no wider than its handle box
      assert np.sqrt(h.get_sizes()).max() <= box
    else:
      assert h.get_window_extent(r).x0 >= ax.get_window_extent(r).x1


def test_label_strips_and_names_on_block_means(tmp_path, monkeypatch):
  """Above rdm.max_images the heatmap averages blocks of label-ordered
  images; each row is drawn in its majority label's colour."""
  figs = _captured(monkeypatch)
  heat, rows = _rdm_with_labels(n=90)
  block = 4
  m = -(-90 // block)
  coarse = np.array(
    [
      [heat[a : a + block, b : b + block].mean() for b in range(0, 90, block)]
      for a in range(0, 90, block)
    ]
  )
  brows = plots.block_labels(rows, block)
  assert len(brows) == m == coarse.shape[0]
  rdm_plots.rdm_heatmap(
    coarse,
    n=90,
    roi='V1',
    metric='euclidean',
    vlim=(1, 6),
    path=tmp_path / 'x',
    rows=brows,
  )
  (fig,) = figs
  left = fig.axes[0]
  assert 'block means' in left.get_title()
  assert [t.get_text() for t in left.get_yticklabels()] == [
    'car',
    'face',
    'tree',
  ]
  # Three images: the heatmap and the two colour strips.
  assert len(left.get_images()) == 3
  assert _overlapping(fig) == []
