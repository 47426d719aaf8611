"""Host buffers that XLA's CPU client shares instead of copying."""

from __future__ import annotations

import numpy as np


def aligned_empty(shape, dtype=np.float32, align: int = 64) -> np.ndarray:
  """np.empty with its data 64-byte aligned (numpy guarantees 16): BLAS runs
  faster on it, and XLA's CPU client shares it on device_put instead of
  copying it (1.5 GB for a full subject)."""
  dtype = np.dtype(dtype)
  n = int(np.prod(shape))
  raw = np.empty(n * dtype.itemsize + align, np.uint8)
  start = -raw.ctypes.data % align
  return raw[start : start + n * dtype.itemsize].view(dtype).reshape(shape)
