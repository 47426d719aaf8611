"""The one error type for bad input.

Raise `InputError` with a message that names the bad value and the fix. The
entry point (`rdmjax.main`) prints it as one line and exits with code 2, with
no traceback; library callers get an ordinary exception.
"""


class InputError(ValueError):
  """Bad user input: a missing file, a wrong shape, an unknown name, ..."""
