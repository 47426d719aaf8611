"""report.md's embed section, as a function of results.json's 'embed'
entry."""

from __future__ import annotations

from typing import Any


def markdown(result: dict[str, Any]) -> str:
  subject = result['subject']
  rows = '\n'.join(
    f'| {k} | {result["dims"][k]} | `{result["paths"][k]}` |'
    for k in result['layers']
  )
  on = result.get('device') or f'{result["devices"]} devices'
  return (
    f'## Embeddings\n\n{result["model"]}, {sum(result["n_images"].values())} '
    f'images of {subject} in {result["seconds"]:.1f} s '
    f'({result["images_per_sec"]:.1f} images/s on {on}).\n\n'
    f'| layer | dim | cache |\n|---|---|---|\n{rows}\n'
  )
