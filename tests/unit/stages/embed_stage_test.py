"""The embed stage: preprocessing vs CLIPImageProcessor; end to end caches."""

from pathlib import Path

import numpy as np
import pytest
import tiny_clip
from PIL import Image

from rdmjax import config_lib
from rdmjax.data import embeddings
from rdmjax.embed import clip_weights
from rdmjax.errors import InputError
from rdmjax.stages import embed

transformers = pytest.importorskip('transformers')

ROOT = Path(__file__).resolve().parents[3]


def _processor(**kw):
  # transformers 5 falls back to the PIL backend without torchvision; ask
  # for it by name where it exists so no warning is printed.
  cls = getattr(transformers, 'CLIPImageProcessorPil', None)
  return (cls or transformers.CLIPImageProcessor)(**kw)


def _images(seed=0):
  rng = np.random.default_rng(seed)
  shapes = [(425, 425), (300, 500), (500, 301), (224, 224), (97, 131)]
  return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def test_preprocess_equals_clip_image_processor_default():
  imgs = _images()
  ref = _processor()(
    images=[Image.fromarray(a) for a in imgs], return_tensors='np'
  )['pixel_values']
  for a, r in zip(imgs, ref):
    ours = clip_weights.preprocess_image(Image.fromarray(a))
    assert ours.shape == (224, 224, 3)
    np.testing.assert_allclose(ours, r.transpose(1, 2, 0), atol=1e-6, rtol=0)


def test_preprocess_equals_clip_image_processor_small_size():
  imgs = _images(1)
  proc = _processor(
    size={'shortest_edge': 40}, crop_size={'height': 32, 'width': 32}
  )
  ref = proc(images=imgs, return_tensors='np')['pixel_values']
  ours = clip_weights.preprocess(
    imgs, clip_weights.Preprocess(size=40, crop=32), 2
  )
  assert ours.shape == (len(imgs), 32, 32, 3)
  np.testing.assert_allclose(ours, ref.transpose(0, 2, 3, 1), atol=1e-6)


def test_read_preprocess_from_saved_processor(tmp_path):
  proc = _processor(
    size={'shortest_edge': 40},
    crop_size={'height': 32, 'width': 32},
    image_mean=[0.5, 0.4, 0.3],
    image_std=[0.2, 0.3, 0.25],
  )
  proc.save_pretrained(tmp_path)
  p = clip_weights.read_preprocess(tmp_path, image_size=32)
  assert p == clip_weights.Preprocess(40, 32, (0.5, 0.4, 0.3), (0.2, 0.3, 0.25))
  assert clip_weights.read_preprocess(None, 32) == clip_weights.Preprocess(
    32, 32
  )


def _tiny_config(folder):
  c = config_lib.load_sibling(str(ROOT / 'configs' / 'x.py'), 'default', 'tiny')
  c.data.root = ''
  c.embed.model = tiny_clip.write_config(folder)
  c.embed.random_init = True
  c.embed.layers = ('image_embeds', 'block1_cls', 'block0_mean')
  return c


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tiny_clip')


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return tmp_path_factory.mktemp('embed')


def test_embed_random_tiny_tower_writes_valid_caches(workdir, tiny_dir):
  from rdmjax import data

  c = _tiny_config(tiny_dir)
  res = embed.run(c, workdir)
  subj = data.subject_from_config(c, workdir)
  dims = {'image_embeds': 16, 'block1_cls': 32, 'block0_mean': 32}
  for layer, d in dims.items():
    path = workdir / 'embeddings' / f'clip_{layer}.npz'
    for split in ('train', 'test'):
      emb, meta = embeddings.read(path, split, subj.nsd_ids(split))
      assert emb.shape == (subj.n_images(split), d)
      assert np.all(np.isfinite(emb))
      assert meta['layer'] == layer and meta['subject'] == subj.name
  first, _ = embeddings.read(workdir / 'embeddings' / 'clip.npz')
  again, _ = embeddings.read(workdir / 'embeddings' / 'clip_image_embeds.npz')
  np.testing.assert_array_equal(first, again)
  # What --config.data.embeddings=clip trains on is this cache.
  c.data.embeddings = 'clip'
  assert data.embeddings_path(c, workdir) == workdir / 'embeddings' / 'clip.npz'
  assert res['n_images'] == {'train': 120, 'test': 30}
  # Different images give different embeddings (padding rows dropped).
  assert np.unique(first.round(5), axis=0).shape[0] == first.shape[0]


@pytest.mark.torch
def test_embed_checkpoint_equals_transformers_pipeline(
  workdir, tmp_path, tiny_dir
):
  """Saved HF checkpoint -> embed stage == CLIPImageProcessor + torch model."""
  torch = pytest.importorskip('torch')
  from rdmjax import data

  hf = transformers.CLIPVisionConfig(**tiny_clip.TINY)
  torch.manual_seed(7)
  m = transformers.CLIPVisionModelWithProjection(hf).eval()
  m.save_pretrained(tmp_path)
  proc = _processor(
    size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}
  )
  proc.save_pretrained(tmp_path)
  c = _tiny_config(tiny_dir)
  c.embed.model = str(tmp_path)
  c.embed.random_init = False
  c.embed.layers = ('image_embeds', 'block0_cls')
  embed.run(c, workdir)
  subj = data.subject_from_config(c, workdir)
  paths = subj.image_paths('test')
  pix = proc(
    images=[Image.open(p).convert('RGB') for p in paths], return_tensors='pt'
  )['pixel_values']
  with torch.no_grad():
    o = m(pixel_values=pix, output_hidden_states=True)
  for layer, ref in (
    ('image_embeds', o.image_embeds),
    ('block0_cls', o.hidden_states[1][:, 0]),
  ):
    emb, _ = embeddings.read(
      workdir / 'embeddings' / f'clip_{layer}.npz', 'test', subj.nsd_ids('test')
    )
    np.testing.assert_allclose(emb, ref.numpy(), atol=1e-4, rtol=0)


def test_batch_not_divisible_by_devices_is_input_error(workdir, tiny_dir):
  c = _tiny_config(tiny_dir)
  c.embed.batch_size = 12  # 8 fake devices
  with pytest.raises(InputError, match='batch_size'):
    embed.run(c, workdir)


def test_unknown_dtype_is_input_error(tiny_dir):
  c = _tiny_config(tiny_dir)
  c.embed.dtype = 'float16'
  with pytest.raises(InputError, match='dtype'):
    clip_weights.build_tower(c.embed)
