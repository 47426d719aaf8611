"""Running rdmjax from the command line: flags and help (`cli`), workdir
state and reruns (`workdir`), checks before the first stage (`preflight`)."""
