"""The XLA programs compiled while a block runs, by name (jax.monitoring):
the compile tests' one listener. Import, not a test module."""

import contextlib

import jax

COMPILE = '/jax/core/compile/backend_compile_duration'


@contextlib.contextmanager
def programs():
  """Yields a list that fills with each program's name ('jit(f)') as it
  is compiled inside the block."""
  made = []

  def listen(name, secs, **kw):
    if name == COMPILE:
      made.append(kw.get('fun_name'))

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield made
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
