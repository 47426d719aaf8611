"""The device mesh and the two placements training needs.

`config.mesh = (('data', -1),)`: axis names and sizes, -1 meaning "every
device left", as big_vision's `create_device_mesh`. Pair batches are split
over `data` (`P('data')`); parameters, optimizer state, responses and
embeddings are replicated (small next to the pair batch; a benchmark would
have to show otherwise before sharding them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rdmjax.errors import InputError


def mesh_shape(
  spec: Sequence[tuple[str, int]], n_devices: int
) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """Resolves one -1 in a mesh spec to the devices left over.

  Args:
    spec: ((axis_name, size), ...), at most one size -1.
    n_devices: how many devices the mesh spans.

  Returns:
    (axis names, sizes) whose product is n_devices.
  """
  names = tuple(str(n) for n, _ in spec)
  sizes = [int(s) for _, s in spec]
  if sizes.count(-1) > 1:
    raise InputError(f'mesh {tuple(spec)}: at most one axis may be -1')
  known = int(np.prod([s for s in sizes if s != -1]))
  if known <= 0 or n_devices % known:
    raise InputError(
      f'mesh {tuple(spec)} does not divide {n_devices} devices: make the '
      f'product of the fixed axis sizes divide {n_devices}'
    )
  sizes = [n_devices // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != n_devices:
    raise InputError(
      f'mesh {tuple(spec)} spans {int(np.prod(sizes))} devices but there '
      f'are {n_devices}: set one axis size to -1'
    )
  return names, tuple(sizes)


def make_mesh(spec: Sequence[tuple[str, int]], devices=None) -> Mesh:
  """Builds the mesh for `config.mesh` over all (or the given) devices."""
  devices = jax.devices() if devices is None else list(devices)
  names, sizes = mesh_shape(spec, len(devices))
  # Auto axes: shardings are placed by in/out_shardings and constraints,
  # not carried in types (jax.make_mesh defaults to Explicit axes now).
  auto = (jax.sharding.AxisType.Auto,) * len(names)
  if devices == jax.devices():
    return jax.make_mesh(sizes, names, axis_types=auto, devices=devices)
  return Mesh(np.asarray(devices).reshape(sizes), names, axis_types=auto)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: str = 'data') -> NamedSharding:
  """Leading dimension split over the data axis."""
  return NamedSharding(mesh, P(axis))


def data_size(mesh: Mesh, axis: str = 'data') -> int:
  return int(mesh.shape[axis]) if axis in mesh.shape else 1


def put_replicated(x: Any, mesh: Mesh) -> Any:
  """Places host arrays (a pytree) replicated on every device of the mesh.

  Multi-host: every process holds the same host array and contributes its
  local devices' copies (`make_array_from_callback`), as big_vision does.
  """
  sharding = replicated(mesh)

  def put(a):
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

  return jax.tree.map(put, x)


def check_divisible(what: str, n: int, mesh: Mesh, fix: str) -> None:
  """Raises InputError if a batch dimension does not split over `data`."""
  k = data_size(mesh)
  if n % k:
    raise InputError(
      f'{what} is {n}, which does not divide over {k} devices on the data '
      f'axis: {fix}'
    )


def aligned_empty(shape, dtype=np.float32, align: int = 64) -> np.ndarray:
  """np.empty with its data 64-byte aligned (numpy guarantees 16): BLAS runs
  faster on it, and XLA's CPU client shares it on device_put instead of
  copying it (1.5 GB for a full subject)."""
  dtype = np.dtype(dtype)
  n = int(np.prod(shape))
  raw = np.empty(n * dtype.itemsize + align, np.uint8)
  start = -raw.ctypes.data % align
  return raw[start : start + n * dtype.itemsize].view(dtype).reshape(shape)
