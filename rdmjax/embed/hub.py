"""The one offline lookup of a model in the Hugging Face cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rdmjax.errors import InputError


def local_folder(
  name_or_dir: str,
  cache_dir: str | None,
  example: str,
  not_found: Callable[[str], InputError],
) -> Path:
  """A model's folder: `name_or_dir` itself when it is a folder, else the
  cached snapshot of the hub id; never a network call.

  Args:
    name_or_dir: a local folder or a hub id ('org/name').
    cache_dir: the hub cache (default: huggingface_hub's).
    example: a hub id for the message when name_or_dir is neither.
    not_found: makes the one-line error for a hub id not in the cache.

  Raises:
    InputError: neither a folder nor a hub id, or not in the cache.
  """
  name = str(name_or_dir)
  path = Path(name).expanduser()
  if path.is_dir():
    return path
  if name.count('/') != 1 or name.startswith(('.', '/', '~')):
    raise InputError(
      f'config.embed.model={name!r} is neither a folder nor a hub id like '
      f'{example}'
    )
  # On first use: huggingface_hub comes with transformers, which the
  # default run never imports.
  import huggingface_hub

  try:
    snap = huggingface_hub.snapshot_download(
      name, local_files_only=True, cache_dir=cache_dir
    )
  except (OSError, ValueError, huggingface_hub.errors.HfHubHTTPError):
    raise not_found(name) from None
  return Path(snap)
