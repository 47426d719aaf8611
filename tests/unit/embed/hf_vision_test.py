"""The hf embed backend: any transformers image model, through PyTorch.

Tiny randomly initialised ViT, DINOv2 (with and without register tokens),
ConvNeXt and CLIP (text and vision: the backend runs the vision tower) are
saved with save_pretrained beside their image processors; the backend's
layers must equal a forward of the same model and processor written out
here, and the embed stage must write caches the rest of the pipeline reads.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from rdmjax import config_lib  # noqa: E402
from rdmjax.data import embeddings, inputs  # noqa: E402
from rdmjax.embed import hf_vision  # noqa: E402
from rdmjax.errors import InputError  # noqa: E402
from rdmjax.stages import embed  # noqa: E402
from rdmjax.training import loop as train  # noqa: E402

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[3]
VIT = dict(
  hidden_size=32,
  num_hidden_layers=2,
  num_attention_heads=2,
  intermediate_size=64,
  image_size=32,
  patch_size=8,
)


def _pil(name):
  # transformers 5 without torchvision: the PIL backends, by name.
  return getattr(transformers, f'{name}Pil', None) or getattr(
    transformers, name
  )


def _models():
  """{kind: (model class, config, processor, leading tokens)}."""
  crop = dict(size={'shortest_edge': 40}, crop_size={'height': 32, 'width': 32})
  return {
    'vit': (
      transformers.ViTModel,
      transformers.ViTConfig(**VIT),
      _pil('ViTImageProcessor')(
        size={'height': 32, 'width': 32}, image_mean=[0.4, 0.5, 0.6]
      ),
      1,
    ),
    'dinov2': (
      transformers.Dinov2Model,
      transformers.Dinov2Config(**{**VIT, 'mlp_ratio': 2}),
      _pil('BitImageProcessor')(**crop),
      1,
    ),
    'dinov2_reg': (
      transformers.Dinov2WithRegistersModel,
      transformers.Dinov2WithRegistersConfig(
        **{**VIT, 'mlp_ratio': 2, 'num_register_tokens': 2}
      ),
      _pil('BitImageProcessor')(**crop),
      3,
    ),
    'convnext': (
      transformers.ConvNextModel,
      transformers.ConvNextConfig(
        num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2
      ),
      _pil('ConvNextImageProcessor')(size={'shortest_edge': 32}),
      None,
    ),
    'clip': (
      transformers.CLIPModel,
      transformers.CLIPConfig(
        text_config=dict(
          hidden_size=16,
          intermediate_size=32,
          num_hidden_layers=1,
          num_attention_heads=2,
          vocab_size=64,
        ),
        vision_config=dict(VIT),
        projection_dim=8,
      ),
      _pil('CLIPImageProcessor')(**crop),
      1,
    ),
  }


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """{kind: folder} of saved random models with processors."""
  root = tmp_path_factory.mktemp('hf_models')
  out = {}
  for i, (kind, (cls, cfg, proc, _)) in enumerate(_models().items()):
    torch.manual_seed(i)
    m = cls(cfg).eval()
    with torch.no_grad():  # no trivial LayerNorms or zero biases
      for p in m.parameters():
        p.add_(0.05 * torch.randn_like(p))
    m.save_pretrained(root / kind)
    proc.save_pretrained(root / kind)
    out[kind] = root / kind
  return out


def _images(n=7, seed=0):
  rng = np.random.default_rng(seed)
  shapes = [(48, 48), (40, 64), (70, 41), (32, 32), (50, 90), (33, 80)]
  return [
    Image.fromarray(rng.integers(0, 256, (*shapes[i % 6], 3), dtype=np.uint8))
    for i in range(n)
  ]


LAYERS = {
  'vit': (
    'pooler_output',
    'cls',
    'mean',
    'hidden_states.0',
    'hidden_states.2',
    'hidden_states.1.cls',
  ),
  'convnext': ('pooler_output', 'mean', 'hidden_states.0', 'hidden_states.2'),
}
LAYERS['dinov2'] = LAYERS['dinov2_reg'] = LAYERS['clip'] = LAYERS['vit']


def _reference(kind, folder, images):
  """The layers from a plain forward of the model and processor."""
  cls, _, proc, lead = _models()[kind]
  proc = type(proc).from_pretrained(folder)
  model = cls.from_pretrained(folder).eval()
  if kind == 'clip':
    model = model.vision_model
  pix = proc(images=images, return_tensors='pt')['pixel_values']
  with torch.no_grad():
    o = model(pixel_values=pix, output_hidden_states=True)
  hs, last = o.hidden_states, o.last_hidden_state
  if lead is None:  # [n, c, h, w]
    ref = {'mean': last.mean((2, 3))}
    ref |= {f'hidden_states.{k}': h.mean((2, 3)) for k, h in enumerate(hs)}
  else:
    ref = {'cls': last[:, 0], 'mean': last[:, lead:].mean(1)}
    ref |= {f'hidden_states.{k}': h[:, lead:].mean(1) for k, h in enumerate(hs)}
    ref |= {f'hidden_states.{k}.cls': h[:, 0] for k, h in enumerate(hs)}
    # The test tells the leading tokens apart from the patches.
    assert not torch.allclose(ref['mean'], last.mean(1), atol=1e-4)
  ref['pooler_output'] = o.pooler_output
  return {k: v.numpy() for k, v in ref.items()}


@pytest.mark.parametrize('kind', list(LAYERS))
def test_layers_equal_a_plain_transformers_forward(kind, tiny):
  imgs = _images()
  got = hf_vision.embed_images(
    str(tiny[kind]), imgs, LAYERS[kind], batch_size=3, device='cpu'
  )
  ref = _reference(kind, tiny[kind], imgs)
  assert list(got) == list(LAYERS[kind])
  for layer, emb in got.items():
    assert emb.dtype == np.float32 and emb.shape == ref[layer].shape, layer
    np.testing.assert_allclose(
      emb, ref[layer], atol=1e-5, rtol=0, err_msg=layer
    )


def test_bfloat16_is_close_to_float32(tiny):
  imgs = _images(4)
  f32 = hf_vision.embed_images(str(tiny['dinov2']), imgs, ('cls',))['cls']
  bf16 = hf_vision.embed_images(
    str(tiny['dinov2']), imgs, ('cls',), dtype='bfloat16'
  )['cls']
  assert bf16.dtype == np.float32
  np.testing.assert_allclose(bf16, f32, atol=0.1 * np.abs(f32).max())


@pytest.mark.parametrize(
  'kind, layer, match',
  [
    ('convnext', 'cls', 'no class token'),
    ('vit', 'hidden_states.3', 'hidden states 0 to 2'),
    ('vit', 'block1_cls', 'unknown for the hf backend'),
  ],
)
def test_layer_the_model_lacks_is_one_line_input_error(
  kind, layer, match, tiny
):
  with pytest.raises(InputError, match=match) as e:
    hf_vision.embed_images(str(tiny[kind]), _images(2), (layer,))
  assert '\n' not in str(e.value)


def test_checkpoint_without_pooler_refuses_pooler_output(tmp_path):
  torch.manual_seed(0)
  cfg = transformers.ViTConfig(**VIT)
  transformers.ViTModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path)
  _pil('ViTImageProcessor')(size={'height': 32, 'width': 32}).save_pretrained(
    tmp_path
  )
  with pytest.raises(InputError, match='no pooler weights'):
    hf_vision.embed_images(str(tmp_path), _images(2), ('pooler_output',))
  # The other layers are the checkpoint's own weights.
  got = hf_vision.embed_images(str(tmp_path), _images(2), ('cls',))
  assert got['cls'].shape == (2, 32)


def test_missing_model_is_one_line_input_error(tmp_path, tiny):
  cases = {
    'nobody/not-a-cached-model': 'not found locally.*hf download',
    str(tmp_path / 'absent'): 'neither a folder nor a hub id',
    str(tmp_path): 'has no config.json',
  }
  (tmp_path / 'half').mkdir()
  (tmp_path / 'half' / 'config.json').write_text(
    (tiny['vit'] / 'config.json').read_text()
  )
  cases[str(tmp_path / 'half')] = 'has no preprocessor_config.json'
  for name, match in cases.items():
    with pytest.raises(InputError, match=match) as e:
      hf_vision.HFVision(name, ('cls',), device='cpu')
    assert '\n' not in str(e.value), name


def test_cache_names():
  assert hf_vision.cache_name('facebook/dinov2-small') == 'dinov2-small'
  assert hf_vision.cache_name('/m/my model/') == 'my_model'
  assert hf_vision.cache_name('/m/clip', True) == 'random-hf-clip'


def _tiny_config(model):
  c = config_lib.load_sibling(str(ROOT / 'configs' / 'x.py'), 'default', 'tiny')
  c.data.root = ''
  c.embed.backend = 'hf'
  c.embed.model = str(model)
  c.embed.hf_layers = ('cls', 'hidden_states.1')
  c.embed.hf_device = 'cpu'
  c.embed.batch_size = 32
  c.train.run_leaked = False
  return c


@pytest.fixture(scope='module')
def stage_run(tmp_path_factory, tiny):
  workdir = tmp_path_factory.mktemp('hf_embed')
  c = _tiny_config(tiny['dinov2'])
  return c, workdir, embed.run(c, workdir)


def test_stage_writes_caches_the_pipeline_reads(stage_run, tiny):
  from rdmjax import data

  c, workdir, res = stage_run
  subj = data.subject_from_config(c, workdir)
  out = workdir / 'embeddings'
  assert res['n_images'] == {'train': 120, 'test': 30}
  assert res['dims'] == {'cls': 32, 'hidden_states.1': 32}
  pooling = {
    'cls': 'token 0 of 17',
    'hidden_states.1': 'mean over 16 tokens (token 0 excluded)',
  }
  for layer in c.embed.hf_layers:
    for split in ('train', 'test'):
      emb, meta = embeddings.read(
        out / f'dinov2_{layer}.npz', split, subj.nsd_ids(split)
      )
      assert emb.shape == (subj.n_images(split), 32)
      assert meta['layer'] == layer and meta['subject'] == subj.name
      assert meta['model'] == str(tiny['dinov2'])
      assert meta['preprocessing'].startswith('BitImageProcessor')
      assert '"crop_size"' in meta['preprocessing']
      assert meta['pooling'] == pooling[layer] and meta['backend'] == 'hf'
  # dinov2.npz (the first layer) is what data.embeddings=PATH trains on.
  first, _ = embeddings.read(out / 'dinov2.npz')
  np.testing.assert_array_equal(
    first, embeddings.read(out / 'dinov2_cls.npz')[0]
  )
  # The stage's rows are the images' embeddings, in the fMRI row order.
  test, _ = embeddings.read(out / 'dinov2_cls.npz', 'test')
  direct = hf_vision.embed_images(
    str(tiny['dinov2']),
    [Image.open(p).convert('RGB') for p in subj.image_paths('test')],
    ('cls',),
  )['cls']
  np.testing.assert_allclose(test, direct, atol=1e-5, rtol=0)
  # Every cache is an RSA source of the rdm stage.
  sources = inputs.embedding_sources(c, workdir)
  assert {'dinov2', 'dinov2_cls', 'dinov2_hidden_states.1'} <= set(sources)
  embs, info = inputs.read_embeddings(sources, 'train', subj.nsd_ids('train'))
  assert embs['dinov2_hidden_states.1'].shape == (120, 32)
  assert info['dinov2_cls']['model'] == str(tiny['dinov2'])
  assert (workdir / 'report.md').read_text().count('on cpu with PyTorch') == 1


def test_mlp_trains_on_the_cache(stage_run):
  c, workdir, _ = stage_run
  c = c.copy_and_resolve_references()
  c.data.embeddings = str(workdir / 'embeddings' / 'dinov2.npz')
  c.train.steps = 4
  c.train.eval_every = 2
  c.ckpt.every = 2
  c.train.baselines = ()
  c.train.bootstrap = 0
  assert train.load_data(c, workdir).meta['d_in'] == 32
  r = train.train(c, workdir / 'mlp', data_dir=workdir)
  assert np.isfinite(r.test['spearman'])


def test_random_init_and_own_name(stage_run, tiny):
  c, workdir, _ = stage_run
  c = c.copy_and_resolve_references()
  c.embed.model = str(tiny['convnext'])
  c.embed.random_init = True
  c.embed.hf_layers = ('mean',)
  res = embed.run(c, workdir)
  assert res['paths'] == {
    'mean': str(workdir / 'embeddings' / 'random-convnext_mean.npz')
  }
  emb, meta = embeddings.read(res['paths']['mean'], 'test')
  assert meta['model'] == f'random:{tiny["convnext"]}:seed=0'
  assert meta['pooling'] == 'mean over 4x4 positions'
  assert emb.shape == (30, 16)
  c.embed.hf_name = 'mine'
  c.embed.random_init = False
  assert embed.run(c, workdir)['paths']['mean'].endswith('/mine_mean.npz')


def test_stage_missing_model_and_backend(stage_run, tmp_path):
  c, workdir, _ = stage_run
  c = c.copy_and_resolve_references()
  c.embed.model = 'nobody/absent'
  with pytest.raises(InputError, match='nobody/absent not found locally'):
    embed.run(c, workdir)
  c.embed.backend = 'torch'
  with pytest.raises(InputError, match="backend='torch' unknown"):
    embed.run(c, workdir)
