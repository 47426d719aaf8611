"""report.md's group section and figures, as functions of results.json's
'group' entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rdmjax.report import md_table, plots


def transfer_figure(tr: dict, path: Path) -> Path:
  plt = plots.pyplot()
  names, m = tr['subjects'], np.asarray(tr['matrix'], float)
  fig, ax = plt.subplots(
    figsize=(2.2 + 0.55 * len(names), 1.2 + 0.5 * len(names)),
    layout='constrained',
  )
  im = ax.imshow(m, cmap='viridis')
  ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
  ax.set_yticks(range(len(names)), names, fontsize=7)
  ax.set(xlabel='scored on (test pairs of)', ylabel='trained on')
  for (i, j), v in np.ndenumerate(m):
    if np.isfinite(v):  # dark text on the light (yellow) end of viridis
      c = 'k' if im.norm(v) > 0.6 else 'w'
      ax.text(j, i, f'{v:.2f}', ha='center', va='center', fontsize=6, color=c)
  fig.colorbar(im, ax=ax, label='test Spearman')
  return plots.save_figure(fig, path)


def group_figure(per: dict, summary: dict, path: Path) -> Path:
  """Each headline number: subjects as points, the mean and its 95%
  interval."""
  plt = plots.pyplot()
  keys = [k for k in summary if summary[k]['n'] >= 1]
  fig, ax = plt.subplots(
    figsize=(7, 0.35 * len(keys) + 1.2), layout='constrained'
  )
  for y, k in enumerate(keys):
    vals = [per[s][k] for s in per if per[s].get(k) is not None]
    ax.scatter(vals, [y] * len(vals), s=12, color='grey', zorder=2)
    m = summary[k]
    if m['n'] >= 2:
      ax.errorbar(
        m['mean'],
        y,
        xerr=[[m['mean'] - m['ci_low']], [m['ci_high'] - m['mean']]],
        fmt='o',
        color='C0',
        capsize=3,
        zorder=3,
      )
  ax.set_yticks(range(len(keys)), keys, fontsize=7)
  ax.invert_yaxis()
  ax.axvline(0, color='grey', lw=0.8)
  ax.set(xlabel='value per subject (grey), mean with 95% t interval (blue)')
  ax.grid(alpha=0.3, axis='x')
  return plots.save_figure(fig, path)


def _ci(m: dict) -> str:
  if m['n'] < 2:
    return f'{m["mean"]:.3f}' if m['n'] else '-'
  return (
    f'{m["mean"]:.3f} +- {m["sem"]:.3f} [{m["ci_low"]:.3f}, {m["ci_high"]:.3f}]'
  )


def _boot(v: dict, key: str) -> str:
  iv = v.get('intervals', {}).get(key)
  if not iv:
    return f'{v[key]:.3f}'
  return f'{v[key]:.3f} [{iv["low"]:.3f}, {iv["high"]:.3f}]'


def markdown(res: dict) -> str:
  lines = [
    f'## Group: {len(res["finished"])} of {len(res["subjects"])} subjects',
    '',
    'Each headline number over subjects: mean +- SEM [95% t interval], '
    'and how many subjects have it.',
    '',
    md_table(
      ['', 'mean +- SEM [95% interval]', 'subjects'],
      [[k, _ci(m), m['n']] for k, m in res['summary'].items()],
    ),
  ]
  cons = res['consistency']
  rows = [
    [k, *(_boot(v, key) for key in ('mean', 'lower', 'upper'))]
    for k, v in cons.items()
    if isinstance(v, dict)
  ]
  if rows:
    lines += [
      f'### Inter-subject consistency over the {cons["n_shared"]} training '
      'images every subject saw',
      '',
      "Mean Spearman between two subjects' RDMs, and the leave-one-subject-"
      "out noise ceiling (rsatoolbox's bounds, Spearman): what a model of "
      'these images can expect to reach on real data. [95% interval: '
      'bootstrap over the shared images.]',
      '',
      md_table(
        ['ROI metric', 'mean pairwise', 'ceiling lower', 'ceiling upper'],
        rows,
      ),
    ]
  tr = res.get('transfer')
  if tr:
    m = np.asarray(tr['matrix'], float)
    own = np.nanmean(np.diag(m))
    other = np.nanmean(m[~np.eye(len(m), dtype=bool)])
    lines += [
      '### Cross-subject transfer',
      '',
      "Each subject's trained model on every subject's test pairs (rows: "
      f'trained on; columns: scored on): own subject {own:.3f}, other '
      f'subjects {other:.3f} (mean test Spearman). Own model minus the mean '
      'of the others, on the same test pairs (paired bootstrap over the '
      'test images), per test subject and over subjects:',
      '',
      md_table(
        ['scored on', 'own - others [95% interval]'],
        [
          [s, f'{v["value"]:.3f} [{v["low"]:.3f}, {v["high"]:.3f}]']
          for s, v in tr['own_minus_other'].items()
        ]
        + [
          ['mean over subjects (t interval)', _ci(tr['own_minus_other_mean'])]
        ],
      ),
      '',
      f'![Transfer]({res["figures"]["transfer"]})',
      '',
    ]
  for s, why in res['failed'].items():
    lines.append(f'- {s} failed: {why}')
  lines += ['', f'![Group]({res["figures"]["group"]})', '']
  return '\n'.join(lines)
