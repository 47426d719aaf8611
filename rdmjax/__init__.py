"""rdmjax: representational dissimilarity of brain responses to natural scenes.

Importing rdmjax touches no device: submodules import jax lazily where they
need it, and nothing here runs a computation.
"""

__version__ = '0.1.0'
