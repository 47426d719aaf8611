"""Image files: parallel PNG decoding, RGB or min-max grayscale."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from rdmjax.errors import InputError


def _read_png(path: Path, mode: str, size: int | None) -> np.ndarray:

  try:
    with Image.open(path) as im:
      im = im.convert('RGB' if mode == 'rgb' else 'L')
      if size is not None and im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC)
      a = np.asarray(im)
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise InputError(
      f'unreadable image {path} ({type(e).__name__}): replace the file'
    ) from None
  if mode == 'rgb':
    return a
  a = a.astype(np.float32)
  lo, hi = a.min(), a.max()
  # Min-max per image, as the reference study fed its Siamese CNN.
  return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def load_images(
  paths: Sequence[Path],
  mode: str = 'rgb',
  size: int | None = None,
  num_workers: int = 8,
  progress: bool = True,
) -> np.ndarray:
  """Decodes PNGs in parallel threads.

  Args:
    paths: image files.
    mode: 'rgb' -> uint8 [n, s, s, 3]; 'gray' -> f32 [n, s, s] min-max
      normalised to [0, 1] per image (the Siamese CNN's input).
    size: resize to size x size (bicubic); None keeps the file's size.
    num_workers: decoding threads (PIL releases the GIL while decoding).
    progress: show a progress bar for more than 500 images.

  Returns:
    The stacked images.
  """
  if mode not in ('rgb', 'gray'):
    raise InputError(f'image mode {mode!r} is not rgb or gray')
  read = functools.partial(_read_png, mode=mode, size=size)
  with ThreadPoolExecutor(max(1, num_workers)) as pool:
    it = pool.map(read, paths)
    if progress and len(paths) > 500:
      it = tqdm(it, total=len(paths), desc='decoding images', unit='img')
    out = list(it)
  shapes = {a.shape for a in out}
  if len(shapes) > 1:
    raise InputError(
      f'images differ in size {sorted(shapes)[:3]}: pass a size to resize'
    )
  return np.stack(out) if out else np.zeros((0,), np.uint8)
