"""Checked reads of the Algonauts files: .npy headers and arrays, and ROI
mappings through a restricted unpickler.

A damaged or hostile file ends in one line that names it (`InputError`),
never a traceback or code run from a pickle.
"""

from __future__ import annotations

import math
import mmap
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from rdmjax.errors import InputError


def _release(a: np.ndarray) -> None:
  """Drops a memory-mapped array's pages from this process's resident set
  (they stay in the page cache: reading them again costs no disk)."""
  while a is not None and not isinstance(a, np.memmap):
    a = getattr(a, 'base', None)
  m = getattr(a, '_mmap', None)
  if m is not None and hasattr(m, 'madvise') and hasattr(mmap, 'MADV_DONTNEED'):
    m.madvise(mmap.MADV_DONTNEED)


def _one_line(e: BaseException | str, limit: int = 200) -> str:
  """e's text on one line, at most limit characters (text from a file can
  be anything)."""
  s = ' '.join(str(e).split()) or type(e).__name__
  return s if len(s) <= limit else s[: limit - 3] + '...'


def _npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
  """(shape, fortran_order, dtype, data offset) of a .npy file, from its
  header alone (nothing else is read).

  Raises InputError where the file is missing, its header is damaged, or the
  file is shorter than the data its header promises (a truncated copy).
  """
  if not path.is_file():
    raise InputError(
      f'missing file {path}: the subject folder is incomplete; unzip the '
      'subject again from the Algonauts 2023 download'
    )
  try:
    with path.open('rb') as fh:
      version = npy_format.read_magic(fh)
      if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
      elif version == (2, 0):
        shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
      else:
        raise ValueError(f'.npy format version {version} is not supported')
      offset = fh.tell()
  except (ValueError, OSError, EOFError) as e:
    raise InputError(
      f'cannot read {path} ({_one_line(e)}): the file is damaged; copy or '
      'unzip it again'
    ) from None
  if not dtype.hasobject:
    need = math.prod(shape) * dtype.itemsize
    have = path.stat().st_size - offset
    if have < need:
      raise InputError(
        f'{path} is truncated: its header promises a {shape} {dtype} array '
        f'({need} bytes) but the file holds {have} bytes of data; copy or '
        'unzip it again'
      )
  return tuple(shape), fortran, dtype, offset


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
  """A numeric .npy array (memory-mapped where mmap), header checked first;
  never unpickles anything."""
  shape, _, dtype, _ = _npy_header(path)
  if dtype.hasobject or dtype.names is not None or dtype.kind not in 'biuf':
    raise InputError(
      f'{path} holds a {dtype} array, not numbers: replace it with the file '
      'from the Algonauts 2023 download'
    )
  mode = 'r' if mmap and math.prod(shape) > 0 else None
  try:
    return np.load(path, mmap_mode=mode, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise InputError(
      f'cannot read {path} ({_one_line(e)}): the file is damaged; copy or '
      'unzip it again'
    ) from None


# What numpy's pickle of a 0-d object array holding {int: str} refers to, and
# nothing else: a mapping file cannot name any other callable (os.system, ...).
_RECONSTRUCT = np.ndarray.__reduce__(np.empty(()))[0]


_SCALAR = np.int64(0).__reduce__()[0]


_MAPPING_GLOBALS = {
  ('numpy._core.multiarray', '_reconstruct'): _RECONSTRUCT,
  ('numpy.core.multiarray', '_reconstruct'): _RECONSTRUCT,
  ('numpy._core.multiarray', 'scalar'): _SCALAR,
  ('numpy.core.multiarray', 'scalar'): _SCALAR,
  ('numpy', 'ndarray'): np.ndarray,
  ('numpy', 'dtype'): np.dtype,
}


class _ForbiddenGlobal(pickle.UnpicklingError):
  pass


class _MappingUnpickler(pickle.Unpickler):
  """Unpickles only numpy arrays, dtypes and scalars (and plain Python
  containers, numbers and strings, which need no global)."""

  def find_class(self, module: str, name: str):
    try:
      return _MAPPING_GLOBALS[module, name]
    except KeyError:
      raise _ForbiddenGlobal(f'{module}.{name}') from None


def _load_mapping(path: Path) -> dict[int, str]:
  """An ROI mapping file (a pickled 0-d object array holding {code: name})
  as {int: str}, unpickled with `_MappingUnpickler`: a file from elsewhere
  cannot run code by being read."""
  shape, _, dtype, offset = _npy_header(path)
  if shape != () or dtype != np.dtype(object):
    raise InputError(
      f'{path} holds a {shape} {dtype} array, not a pickled label dict '
      '{code: name}: replace it with the file from the Algonauts 2023 '
      'download'
    )
  try:
    with path.open('rb') as fh:
      fh.seek(offset)
      obj = _MappingUnpickler(fh, encoding='ASCII').load()
  except _ForbiddenGlobal as e:
    raise InputError(
      f'{path} is not a plain label dict: its pickle calls '
      f'{_one_line(e, 80)}, which a {{code: name}} dict never needs (reading '
      'it could run code), so it was not loaded; replace it with the file '
      'from the Algonauts 2023 download'
    ) from None
  except Exception as e:  # any failure of an untrusted pickle is bad input
    raise InputError(
      f'cannot read {path} ({type(e).__name__}: {_one_line(e)}): the file is '
      'damaged; replace it with the file from the Algonauts 2023 download'
    ) from None
  if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype.hasobject:
    obj = obj.item()
  if not isinstance(obj, dict):
    raise InputError(
      f'{path} holds a {type(obj).__name__}, not a label dict {{code: name}}:'
      ' replace it with the file from the Algonauts 2023 download'
    )
  for k, v in obj.items():
    if isinstance(k, bool | np.bool_) or not isinstance(k, int | np.integer):
      raise InputError(
        f'{path}: label code {_one_line(repr(k), 60)} ({type(k).__name__}) '
        'is not an integer: replace the file with the one from the '
        'Algonauts 2023 download'
      )
    if not isinstance(v, str):
      raise InputError(
        f'{path}: label {k} names {_one_line(repr(v), 60)} '
        f'({type(v).__name__}), not a string: replace the file with the one '
        'from the Algonauts 2023 download'
      )
  return {int(k): str(v) for k, v in obj.items()}
