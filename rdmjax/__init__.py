"""rdmjax: representational dissimilarity of brain responses to natural scenes.

The names a scientist types, loaded on first use (PEP 562): `import rdmjax`
imports neither jax nor any submodule and touches no device.

>>> import rdmjax
>>> r = rdmjax.rdm(x, 'correlation')          # x: [n, d] -> [n, n]
>>> rdmjax.compare_rdms(r, model_rdm, 'spearman')

The rest lives in rooms by role: `rdmjax.rsa` (the science: RDMs, their
comparison, inference, noise ceilings, encoding models, MDS, rsatoolbox),
`rdmjax.data` (the Algonauts 2023 reader and the synthetic subject),
`rdmjax.embed` (image encoders), `rdmjax.models` and `rdmjax.training` (pair
models), `rdmjax.stages` (one module per `--mode`) and `rdmjax.report`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING

__version__ = '0.1.0'

# Public name -> (module, attribute).
_EXPORTS = {
  # RDMs and their comparison.
  'rdm': ('rdmjax.rsa.rdm', 'rdm'),
  'compare_rdms': ('rdmjax.rsa.compare', 'compare_rdms'),
  'compare_many': ('rdmjax.rsa.compare', 'compare_many'),
  'upper_triangle': ('rdmjax.rsa.compare', 'upper_triangle'),
  'rdm_stats': ('rdmjax.rsa.summary', 'rdm_stats'),
  'mds': ('rdmjax.rsa.mds', 'mds'),
  # Inference and several subjects.
  'bootstrap_pair_scores': ('rdmjax.rsa.inference', 'bootstrap_pair_scores'),
  'permutation_test': ('rdmjax.rsa.inference', 'permutation_test'),
  'noise_ceiling': ('rdmjax.rsa.group', 'noise_ceiling'),
  'compare_models': ('rdmjax.rsa.evaluation', 'compare_models'),
  'plot_model_comparison': (
    'rdmjax.report.model_plots',
    'model_comparison_from_result',
  ),
  'crossnobis': ('rdmjax.rsa.crossval', 'crossnobis'),
  'intersubject_consistency': ('rdmjax.rsa.group', 'intersubject_consistency'),
  # Encoding models.
  'fit_ridge': ('rdmjax.rsa.encoding', 'fit_ridge'),
  # rsatoolbox and RDM files.
  'to_rsatoolbox': ('rdmjax.rsa.interop', 'to_rsatoolbox'),
  'from_rsatoolbox': ('rdmjax.rsa.interop', 'from_rsatoolbox'),
  'save_rdms': ('rdmjax.rsa.interop', 'save_rdms'),
  'load_rdms': ('rdmjax.rsa.interop', 'load_rdms'),
  # Data.
  'load_subject': ('rdmjax.data.algonauts', 'load_subject'),
  'write_synthetic_subject': ('rdmjax.data.synthetic', 'write_subject'),
  'read_embeddings': ('rdmjax.data.embeddings', 'read'),
  # Configs and errors.
  'get_config': ('rdmjax.config_lib', 'get_config'),
  'InputError': ('rdmjax.errors', 'InputError'),
}
# Old module names kept for one version, with a warning.
_DEPRECATED = {'kernels': 'rdmjax.rsa.rdm'}

# The same names as _EXPORTS (tests/unit/public_test.py checks).
__all__ = [
  'InputError',
  'bootstrap_pair_scores',
  'compare_many',
  'compare_models',
  'compare_rdms',
  'crossnobis',
  'fit_ridge',
  'from_rsatoolbox',
  'get_config',
  'intersubject_consistency',
  'load_rdms',
  'load_subject',
  'mds',
  'noise_ceiling',
  'permutation_test',
  'plot_model_comparison',
  'rdm',
  'rdm_stats',
  'read_embeddings',
  'save_rdms',
  'to_rsatoolbox',
  'upper_triangle',
  'write_synthetic_subject',
]


def __getattr__(name: str):
  if name in _EXPORTS:
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value
  if name in _DEPRECATED:
    warnings.warn(
      f'rdmjax.{name} is deprecated: use {_DEPRECATED[name]} (or rdmjax.rdm)',
      DeprecationWarning,
      stacklevel=2,
    )
    return importlib.import_module(_DEPRECATED[name])
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
  from rdmjax.config_lib import get_config
  from rdmjax.data.algonauts import load_subject
  from rdmjax.data.embeddings import read as read_embeddings
  from rdmjax.data.synthetic import write_subject as write_synthetic_subject
  from rdmjax.errors import InputError
  from rdmjax.report.model_plots import (
    model_comparison_from_result as plot_model_comparison,
  )
  from rdmjax.rsa.compare import compare_many, compare_rdms, upper_triangle
  from rdmjax.rsa.crossval import crossnobis
  from rdmjax.rsa.encoding import fit_ridge
  from rdmjax.rsa.evaluation import compare_models
  from rdmjax.rsa.group import intersubject_consistency, noise_ceiling
  from rdmjax.rsa.inference import bootstrap_pair_scores, permutation_test
  from rdmjax.rsa.interop import (
    from_rsatoolbox,
    load_rdms,
    save_rdms,
    to_rsatoolbox,
  )
  from rdmjax.rsa.mds import mds
  from rdmjax.rsa.rdm import rdm
  from rdmjax.rsa.summary import rdm_stats
