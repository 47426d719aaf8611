"""TFDS builder for Algonauts 2023 subjects: array_record, no TensorFlow.

One config per real subject (`subj01` ... `subj08`, read from a manual
directory holding the Algonauts download) and `synthetic` (written on
demand). `build(config, data_dir, manual_dir=...)` writes it once;
`load(config, data_dir, split)` opens a split for random access; record i
of a split is row i of its fMRI. Examples: `image` (the PNG byte for byte),
`nsd_id`, `index`, `lh_fmri`, `rh_fmri` (empty where the download has no
test fMRI). A `ShardBasedBuilder`, not `GeneratorBasedBuilder`, whose
shuffler needs `tf.io.gfile` past 1 GB: docs/data.md, "TFDS dataset".
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from rdmjax.data import algonauts, synthetic
from rdmjax.errors import InputError

NAME = 'nsd_algonauts'
SUBJECTS = tuple(f'subj{i:02d}' for i in range(1, 9))
SYNTHETIC = 'synthetic'
# The synthetic subject is written here, under the builder's download dir.
SYNTHETIC_FOLDER = 'nsd_algonauts_synthetic'
# Target shard size. TFDS holds one shard's examples in memory while it
# writes it (ShardWriter tees the iterator to count it).
SHARD_BYTES = 256 << 20

_INSTRUCTIONS = """\
Get the Algonauts 2023 challenge data: fill in the data request form linked
from https://algonauts.csail.mit.edu/challenge.html (Algonauts Project 2023),
which leads to the `algonauts_2023_challenge_data` folder of one zip per
subject (subj01.zip ... subj08.zip). Unzip the subjects you need into one
folder, so that it directly holds subj01/, subj02/, ... (each with
training_split/, test_split/ and roi_masks/; the post-challenge layout with
train_data/subjNN and test_data/subjNN also works). Pass that folder as the
manual directory:
  tfds_nsd.build('subj01', DATA_DIR, manual_dir='/path/to/that/folder')
or `download_config=tfds.download.DownloadConfig(manual_dir=...)`.
"""

_CITATION = """\
@article{allen2022massive,
  title={A massive 7T fMRI dataset to bridge cognitive neuroscience and
         artificial intelligence},
  author={Allen, Emily J. and St-Yves, Ghislain and Wu, Yihan and others},
  journal={Nature Neuroscience},
  volume={25},
  pages={116--126},
  year={2022}
}
@article{gifford2023algonauts,
  title={The Algonauts Project 2023 Challenge: How the Human Brain Makes
         Sense of Natural Scenes},
  author={Gifford, Alessandro T. and Lahner, Benjamin and Saba-Sadiya, Sari
          and Vilas, Martina G. and Lascelles, Alex and Oliva, Aude and
          Kay, Kendrick and Roig, Gemma and Cichy, Radoslaw M.},
  journal={arXiv preprint arXiv:2301.03198},
  year={2023}
}
"""


class NsdAlgonauts(tfds.core.ShardBasedBuilder):
  """NSD fMRI (Algonauts 2023 release) with the images, one subject a config.

  Args (constructor, besides the usual TFDS ones):
    synthetic_kwargs: keyword arguments for
      `rdmjax.data.synthetic.ensure_subject` (n_train, n_test, ...), used by
      the `synthetic` config only; None keeps that function's defaults.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
    tfds.core.BuilderConfig(
      name=s, description=f'Algonauts 2023 subject {s} (manual download).'
    )
    for s in SUBJECTS
  ] + [
    tfds.core.BuilderConfig(
      name=SYNTHETIC,
      description=(
        'Synthetic subject in the Algonauts layout, written by '
        'rdmjax.data.synthetic (no download).'
      ),
    )
  ]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup touches `importlib_resources` (a backport that is not
    # a TFDS requirement) for any builder inside a package; this file is it.
    return epath.Path(inspect.getfile(cls))

  def __init__(self, *, synthetic_kwargs: dict | None = None, **kwargs):
    self._synthetic_kwargs = dict(synthetic_kwargs or {})
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        'Natural Scenes Dataset fMRI responses as prepared for the Algonauts '
        '2023 challenge: per image, the PNG and the responses of the '
        "subject's left and right hemisphere challenge-space vertices."
      ),
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(
            shape=(None, None, 3), encoding_format='png'
          ),
          'nsd_id': tfds.features.Scalar(dtype=np.int64),
          'index': tfds.features.Scalar(dtype=np.int32),
          'lh_fmri': tfds.features.Tensor(shape=(None,), dtype=np.float32),
          'rh_fmri': tfds.features.Tensor(shape=(None,), dtype=np.float32),
        }
      ),
      homepage='https://algonauts.csail.mit.edu/',
      citation=_CITATION,
      metadata=tfds.core.MetadataDict(),
      # Record i is row i of the split (shards are written in row order).
      disable_shuffling=True,
    )

  def _source_root(self, dl_manager) -> Path:
    if self.builder_config.name != SYNTHETIC:
      return Path(dl_manager.manual_dir)

    root = Path(dl_manager.download_dir) / SYNTHETIC_FOLDER
    synthetic.ensure_subject(root, 'subj01', **self._synthetic_kwargs)
    return root

  def _shard_iterators_per_split(self, dl_manager):
    root = self._source_root(dl_manager)
    synthetic = self.builder_config.name == SYNTHETIC
    name = 'subj01' if synthetic else self.builder_config.name
    subject = algonauts.load_subject(root, name, mmap=True)
    if not subject.n_images('test'):
      raise InputError(
        f'{name} under {root} has no test images: unzip the whole subject '
        '(test_split/test_images) again'
      )
    self.info.metadata.update(
      {
        'subject': name,
        'source': self.builder_config.name,
        'n_vertices': dict(subject.n_vertices),
        'n_images': {s: subject.n_images(s) for s in ('train', 'test')},
        'test_fmri': subject.has_fmri('test'),
        'synthetic_kwargs': (
          _synthetic_params(self._synthetic_kwargs) if synthetic else None
        ),
      }
    )
    return {s: _shard_generators(subject, s) for s in ('train', 'test')}


def _shard_generators(
  subject: algonauts.Subject, split: str
) -> list[functools.partial]:
  """One example generator per shard of about SHARD_BYTES, in row order."""
  n = subject.n_images(split)
  paths = subject.image_paths(split)
  png = sum(p.stat().st_size for p in paths) / n
  fmri = 4 * sum(subject.n_vertices.values()) * subject.has_fmri(split)
  per_shard = max(1, int(SHARD_BYTES // (png + fmri)))
  return [
    functools.partial(_examples, subject, split, lo, min(lo + per_shard, n))
    for lo in range(0, n, per_shard)
  ]


def _examples(
  subject: algonauts.Subject, split: str, lo: int, hi: int
) -> Iterator[tuple[int, dict[str, Any]]]:
  """Rows lo:hi of a split as (key, example)."""
  if subject.has_fmri(split):
    lh, rh = subject.fmri[split]
  else:
    lh = rh = np.zeros((subject.n_images(split), 0), np.float32)
  paths, ids = subject.image_paths(split), subject.nsd_ids(split)
  for i in range(lo, hi):
    # The file's own bytes: no decode/re-encode, so the stored PNG is the
    # downloaded one bit for bit.
    yield (
      i,
      {
        'image': paths[i].read_bytes(),
        'nsd_id': int(ids[i]),
        'index': i,
        'lh_fmri': np.asarray(lh[i], np.float32),
        'rh_fmri': np.asarray(rh[i], np.float32),
      },
    )


def _synthetic_params(kwargs: dict | None) -> dict:
  # What decides the synthetic data (not `progress`), as its JSON metadata
  # reads back: tuples become lists.
  kw = {k: v for k, v in (kwargs or {}).items() if k != 'progress'}
  return json.loads(json.dumps(kw, default=str, sort_keys=True))


def _check_config(config_name: str) -> None:
  if config_name not in (*SUBJECTS, SYNTHETIC):
    raise InputError(
      f'TFDS config {config_name!r} is not one of subj01 ... subj08 or '
      'synthetic: pick one of those'
    )


def builder(
  config_name: str,
  data_dir: str | os.PathLike,
  synthetic_kwargs: dict | None = None,
) -> NsdAlgonauts:
  """Returns the builder of one config, writing under data_dir."""
  _check_config(config_name)
  return NsdAlgonauts(
    config=config_name,
    data_dir=os.fspath(Path(data_dir).expanduser()),
    file_format='array_record',
    synthetic_kwargs=synthetic_kwargs,
  )


def build(
  config_name: str,
  data_dir: str | os.PathLike,
  manual_dir: str | os.PathLike | None = None,
  synthetic_kwargs: dict | None = None,
) -> NsdAlgonauts:
  """Builds one config (once; a built config is reused) and returns it.

  Args:
    config_name: 'subj01' ... 'subj08' or 'synthetic'.
    data_dir: TFDS data dir; the dataset lands in
      data_dir/nsd_algonauts/CONFIG/1.0.0.
    manual_dir: the Algonauts root that holds subjNN/ (real subjects only;
      the synthetic subject is written under data_dir/downloads).
    synthetic_kwargs: `rdmjax.data.synthetic.ensure_subject` keyword
      arguments for the synthetic config (e.g. tiny sizes for tests).

  Returns:
    The prepared builder (`.as_data_source()`, `.info.metadata`).
  """
  _check_config(config_name)
  if config_name in SUBJECTS:
    if manual_dir is None:
      raise InputError(
        f'building {config_name} needs manual_dir= the folder that holds '
        'subj01 ... subj08 of the Algonauts 2023 download'
      )
    algonauts.SubjectPaths.find(manual_dir, config_name)  # fail early, clearly
  b = builder(config_name, data_dir, synthetic_kwargs)
  download_config = tfds.download.DownloadConfig(
    manual_dir=None
    if manual_dir is None
    else os.fspath(Path(manual_dir).expanduser())
  )
  b.download_and_prepare(download_config=download_config)
  if config_name == SYNTHETIC:
    built = b.info.metadata.get('synthetic_kwargs')
    wanted = _synthetic_params(synthetic_kwargs)
    if built != wanted:
      raise InputError(
        f'{b.data_dir} holds a synthetic build with synthetic_kwargs={built},'
        f' not {wanted}: use another data_dir or delete that folder'
      )
  return b


def load(
  config_name: str,
  data_dir: str | os.PathLike,
  split: str = 'train',
  *,
  decode_images: bool = True,
) -> Sequence[dict[str, Any]]:
  """Opens a built split for random access (`tfds.data_source`).

  Args:
    config_name: 'subj01' ... 'subj08' or 'synthetic'.
    data_dir: the data dir given to `build`.
    split: 'train' or 'test' (TFDS slicing such as 'train[:100]' works too).
    decode_images: False leaves 'image' as the PNG file's bytes.

  Returns:
    A sequence of example dicts; source[i] is row i of the split.
  """
  _check_config(config_name)
  data_dir = Path(data_dir).expanduser()
  if not (data_dir / NAME / config_name).is_dir():
    raise InputError(
      f'{data_dir}/{NAME}/{config_name} is not built: run '
      f'rdmjax.data.tfds_nsd.build({config_name!r}, {str(data_dir)!r}, ...)'
    )
  decoders = None if decode_images else {'image': tfds.decode.SkipDecoding()}
  return tfds.data_source(
    f'{NAME}/{config_name}',
    split=split,
    data_dir=os.fspath(data_dir),
    download=False,
    decoders=decoders,
  )


def _decode_png(data: bytes) -> np.ndarray:

  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert('RGB'))


def to_arrays(source: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Reads a whole (small) split into arrays: for tests and small subsets.

  A real subject's training split decodes to ~5 GB of pixels; slice it
  (`load(..., split='train[:500]')`) or iterate instead.

  Args:
    source: a data source from `load` (decoded images or PNG bytes).

  Returns:
    lh: [n, v_lh] f32 or None (a split without fMRI), rh: [n, v_rh] f32 or
    None, nsd_ids: [n] int64, index: [n] int32, images: [n, h, w, 3] uint8,
    and png: list of n bytes where the source left the images encoded.
  """
  n = len(source)
  rows = source.__getitems__(list(range(n))) if n else []
  out: dict[str, Any] = {
    'nsd_ids': np.asarray([r['nsd_id'] for r in rows], np.int64),
    'index': np.asarray([r['index'] for r in rows], np.int32),
  }
  for hemi in algonauts.HEMIS:
    vecs = [np.asarray(r[f'{hemi}_fmri'], np.float32) for r in rows]
    out[hemi] = np.stack(vecs) if vecs and vecs[0].size else None
  images = [r['image'] for r in rows]
  if images and isinstance(images[0], bytes | np.bytes_):
    out['png'] = [bytes(b) for b in images]
    images = [_decode_png(b) for b in out['png']]
  out['images'] = (
    np.stack(images) if images else np.zeros((0, 0, 0, 3), np.uint8)
  )
  return out
