"""Stage timings count the XLA programs a stage makes, and stop counting
when it ends."""

import jax
import numpy as np
from jax._src import monitoring

from rdmjax.run import pipeline


def test_compiles_counts_programs_while_active_only():
  x = np.arange(7.0, dtype=np.float32)
  with pipeline.Compiles() as c:
    jax.jit(lambda v: v * 3 + 1)(x)  # a new program
    jax.jit(lambda v: v - 2)(x)  # another
  assert c.programs == 2 and c.from_cache == 0 and c.seconds > 0
  jax.jit(lambda v: v / 5)(x)  # after the stage: not counted
  assert c.programs == 2
  assert c._listeners[0] not in monitoring._event_duration_secs_listeners
  assert c._listeners[1] not in monitoring._event_listeners
