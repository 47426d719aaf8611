"""The tiny training config and a shared subject, for the training tests
(`train_test`, `losses_test`; the `datadir` fixture is in conftest.py):
import, not a test module."""

from rdmjax import config_lib

HERE = 'configs/x.py'
# A 3-subject synthetic population of the group-run tests.
POPULATION = dict(
  n_subjects=3,
  n_train=48,
  n_shared=24,
  n_test=10,
  n_vertices_lh=150,
  n_vertices_rh=160,
  image_size=32,
)


def tiny(**over):
  """The tiny config without the leaked run; over: {'section.field': v}."""
  c = config_lib.load_sibling(HERE, 'default', 'tiny')
  with c.unlocked():
    c.train.run_leaked = False
    for k, v in over.items():
      sec, field = k.split('.')
      c[sec][field] = v
  return c


def workdir(datadir, tmp_path):
  """tmp_path as a workdir reading datadir's subject (no second copy)."""
  tmp_path.mkdir(parents=True, exist_ok=True)
  (tmp_path / 'data').symlink_to(datadir / 'data')
  return tmp_path
