"""report.md's sweep section, as a function of results.json's 'sweep'
entry."""

from __future__ import annotations

from typing import Any

from rdmjax.report import md_table


def _iv(d: dict) -> str:
  return f'{d["value"]:.3f} [{d["low"]:.3f}, {d["high"]:.3f}]'


def markdown(res: dict[str, Any]) -> str:
  val = res['val']
  rows = []
  for r in res['runs']:
    name = r['name']
    v = val['scores'].get(name)
    d = val['minus_reference'].get(name)
    rows.append(
      [
        name + (' (chosen)' if name == res['chosen'] else ''),
        '-' if v is None else _iv(v['spearman']),
        '-' if d is None else _iv(d),
        r['best_step'],
      ]
    )
  m = res['test']['scores']['model']['spearman']
  lines = [
    f'## Sweep of `{res["param"]}`: chosen on validation pairs only',
    '',
    f'{val["n_pairs"]} validation pairs of {val["n_images"]} images; 95% '
    'intervals from one bootstrap over those images, the same draws for '
    'every run (so differences are paired).',
    '',
    md_table(
      [
        'value',
        'validation Spearman [95%]',
        'this minus chosen [95%, paired]',
        'step',
      ],
      rows,
    ),
    f'Test pairs, scored once, for the chosen setting only: Spearman '
    f'{m["value"]:.3f} [{m["low"]:.3f}, {m["high"]:.3f}] (95% interval, '
    'bootstrap over test images).',
    '',
  ]
  tc = res.get('test_comparison')
  if tc:
    rows = []
    for name, st in tc['scores'].items():
      d = tc['minus_reference'].get(name)
      frac = st.get('fraction_of_ceiling')
      rows.append(
        [
          name,
          _iv(st['spearman']),
          '-' if frac is None else _iv(frac),
          '-' if d is None else _iv(d),
        ]
      )
    lines += [
      f'### Every run on the same {tc["n_pairs"]} test pairs (a comparison,'
      ' not used for the choice)',
      '',
      md_table(
        [
          '',
          'test Spearman [95%]',
          'of ceiling [95%]',
          f'minus {tc["reference"]} [95%, paired]',
        ],
        rows,
      ),
      '',
    ]
  return '\n'.join(lines)
