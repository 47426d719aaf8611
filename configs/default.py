"""The default main job: synthetic subject, RDM analysis, MLP training.

  rdmjax --workdir=/tmp/rdmjax
  rdmjax --config=configs/default.py:tiny --workdir=/tmp/rdmjax_tiny
  rdmjax --config=configs/default.py:nsd --workdir=/tmp/rdmjax_nsd

ARG keys: tiny (CI size, seconds on CPU), nsd (a synthetic subject of
subj01's size: 9841 + 159 images of 425 px, 19004 + 20544 vertices; with
tiny, these data sizes win), emb (data.embeddings).

Real data is one flag away:
  rdmjax --workdir=DIR \
    --config.data.root=/path/to/algonauts_2023_challenge_data \
    --config.data.subject=subj01
"""

import ml_collections

from rdmjax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, tiny=False, nsd=False, emb='synthetic')
  c = ml_collections.ConfigDict()
  c.seed = 0
  # A rerun on a workdir: 'auto' reuses the stages it finished with this
  # same config and stops on another config; 'overwrite' removes its
  # results first (data and embedding caches stay). rdmjax.run.workdir.
  c.resume = 'auto'

  c.data = ml_collections.ConfigDict()
  # '' = the embedded default: a synthetic subject written (once) under
  # WORKDIR/data in the Algonauts layout. Else the folder that holds subjNN/
  # (or train_data/ and test_data/).
  c.data.root = ''
  c.data.subject = 'subj01'
  c.data.roi = 'all'  # ROI for training targets: a name, union, class, 'all'
  # Embedding source for the MLP: 'synthetic' (the synthetic subject's),
  # 'clip' (WORKDIR/embeddings/clip.npz from --mode=embed), or a cache path.
  c.data.embeddings = arg.emb
  c.data.num_workers = 8  # threads that decode PNGs
  # Repeats averaged per training image (rdmjax.rsa.repeats): '' = found
  # (training_split/n_repeats.npy, or the synthetic subject's own), a .npy
  # of counts in fMRI row order, or NSD's nsd_expdesign.mat.
  c.data.repeats = ''
  # A group run: '' (one subject, data.subject), 'all' or 'subj01,subj02':
  # the pipeline per subject into WORKDIR/subjNN, then --mode=group.
  c.data.subjects = ''
  # The synthetic population of a group run
  # (synthetic_population.write_population).
  c.data.population = ml_collections.ConfigDict(
    dict(
      n_subjects=8,
      # 400 training images: a split's 320 hold the default block of 256.
      n_shared=150,
      n_train=400,
      n_test=50,
      n_vertices_lh=700,
      n_vertices_rh=760,
      image_size=64,
      n_repeats=3,
      seed=0,
    )
  )
  c.data.synthetic = ml_collections.ConfigDict(
    dict(
      n_train=600,
      n_test=100,
      n_vertices_lh=1900,
      n_vertices_rh=2050,
      image_size=128,
      n_repeats=3,
      seed=0,
    )
  )

  c.rdm = ml_collections.ConfigDict()
  c.rdm.rois = ('V1', 'all')
  c.rdm.metrics = ('correlation', 'euclidean')
  c.rdm.split = 'train'  # which images' responses the analysis uses
  c.rdm.precision = 'float32'  # float32, tf32, bf16
  c.rdm.top_k = 3  # image pairs drawn per extreme
  c.rdm.standardize = True  # per vertex, as the reference study
  c.rdm.bins = 100  # histogram bins of the RDM values
  # Above this many images the heatmap is block-averaged (on device) to
  # ~1000 x 1000 and the RSA compares RDMs of a seeded random subset.
  c.rdm.max_images = 3000
  # Each RSA with a 95% interval (bootstrap over the RSA images) and the
  # p-value of a permutation test of image labels (0: skip either); at most
  # this many, fewer on millions of pairs (analysis.BOOT_WORK, PERM_WORK).
  c.rdm.bootstrap = 1000
  # 'all' images of the split, or 'equal_repeats': only those averaged over
  # the most common number of repeats (an RDM that does not rank noise
  # levels; needs repeat counts, data.repeats).
  c.rdm.images = 'all'
  c.rdm.permutations = 1000
  # A classical-MDS map of the images per ROI (first metric; at most 2000
  # images), coloured by the synthetic category where the subject has one.
  c.rdm.mds = True
  # Each ROI x metric RDM saved as WORKDIR/rdms/{roi}_{metric}.npz
  # (condensed, with the images' NSD ids; rdmjax.rsa.interop.load_rdms,
  # to_rsatoolbox): 194 MB each for NSD's 9841 images.
  c.rdm.save_rdms = True
  # A label per image of rdm.split (e.g. COCO super-categories for NSD):
  # heatmaps are drawn by label and MDS maps coloured by it. One label per
  # line (.txt, .csv without header) or a 1-D .npy, in the split's image
  # order; {subject} and {split} in the path are filled in. '' = the
  # synthetic subject's category, none on real data.
  c.rdm.labels = ''

  c.pairs = ml_collections.ConfigDict()
  c.pairs.fractions = (0.8, 0.1, 0.1)  # train / val / test images
  c.pairs.sampler = 'block'  # 'block' or 'uniform'
  c.pairs.block_size = 256  # images per block batch: B(B-1)/2 pairs
  c.pairs.num_pairs = 32640  # pairs per uniform batch
  c.pairs.metric = 'correlation'  # target: 'correlation' or 'euclidean'
  c.pairs.leaked = False  # split pairs, not images: only to show leakage
  # Test images: 'split' (a seeded split of the training images) or
  # 'official' (post-challenge data: the subject's test images, test_fmri/).
  c.pairs.test_images = 'split'
  # Image splits the model is trained and scored on (seed, seed + 1, ...):
  # > 1 reports the mean over splits with its interval.
  c.pairs.folds = 1
  c.pairs.eval_tile = 256  # images per side of an evaluation tile
  c.pairs.precision = 'float32'  # target matmul: float32, tf32, bf16

  c.model = ml_collections.ConfigDict()
  # 'mlp' (symmetric by construction), 'concat_mlp' (the reference study's
  # MLP on [a, b]; 0 hidden layers: its linear model) or 'siamese_cnn'.
  c.model.name = 'mlp'
  c.model.order_free = True  # concat_mlp: average both orders
  # MLP hidden widths, 0 to 3 layers (chosen on validation Spearman only:
  # `--mode=sweep`, docs/training.md "Sweeps").
  c.model.hidden = (512,)
  c.model.output = 'linear'  # 'linear' or 'sigmoid2' (2 * sigmoid)
  c.model.channels = (16, 32)  # Siamese CNN conv channels
  c.model.image_size = 128  # Siamese CNN input (grayscale)
  c.model.dtype = 'float32'  # compute dtype: float32 or bfloat16

  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adamw'  # 'adam' or 'adamw'
  c.optim.lr = 3e-4
  c.optim.weight_decay = 0.1
  c.optim.schedule = 'cosine'  # 'constant' or 'cosine' (after warmup)
  c.optim.warmup_steps = 20  # at most steps // 2
  c.optim.clip_norm = 1.0  # 0 disables

  c.train = ml_collections.ConfigDict()
  # Validation Spearman plateaus by step ~100 (best checkpoint kept): 200
  # steps keep the default main job under ~4 minutes on 2 CPU cores.
  c.train.steps = 200
  # 'mse', 'pearson_mse' (the study's alpha * (1 - r) + (1 - alpha) * MSE),
  # or a loss on the RDM's ranks within the batch: 'soft_spearman' (1 -
  # Pearson of sigmoid soft ranks and the targets' ranks) or 'pairwise_rank'
  # (logistic loss over pairs of pairs); rdmjax.training.losses.
  c.train.loss = 'mse'
  c.train.rank_pairs = 1024  # rank losses: reference pairs / comparisons
  c.train.rank_temperature = 0.0  # x std(pred); 0: each loss's default
  c.train.alpha = 0.5  # pearson_mse: alpha*(1-r) + (1-alpha)*MSE
  c.train.log_every = 20
  c.train.eval_every = 40
  # Stop once validation Spearman has not risen for this many evaluations
  # in a row (0: train all steps; validation is scored every eval_every
  # steps and at every checkpoint save). The best checkpoint is what is scored
  # either way, so a score means the same; results.json's 'stopped_at'
  # says where a run stopped (None: it ran all its steps).
  c.train.patience = 3
  # Also every metrics.jsonl row (and --mode=eval's test scores) as
  # TensorBoard scalars in WORKDIR/tensorboard (rdmjax.training.metric_writer):
  #   tensorboard --logdir WORKDIR
  c.train.tensorboard = True
  # Pairs scored per held-out split: all of the split's when at most this
  # many (an NSD test split of 984 images has 483,636), else a fixed seeded
  # subset of this many; 0 = always all.
  c.train.max_eval_pairs = 500_000
  c.train.run_leaked = True  # also train the leaked variant, for the report
  # Test pairs scored (0: all picked). The leaked run gets the image-
  # disjoint run's count, so both are scored on test sets of one size.
  c.train.test_pairs = 0
  # Also one model per target ROI (same images and split), with a figure
  # of score and ceiling per ROI; e.g. ('V1', 'V2', 'V3', 'hV4', 'FFA',
  # 'PPA', 'EBA', 'VWFA', 'all'). () = only data.roi.
  c.train.rois = ()
  # Every test score with a 95% interval: bootstrap over test images
  # (resampled with replacement, pairs of one image's copies left out).
  c.train.bootstrap = 1000
  # Scored on the same test pairs as the model: 'zero_shot' (embedding
  # RSA), 'ridge' (encoding model -> predicted RDM), 'reweighted'
  # (feature-reweighted RSA); the ceiling whenever the subject has one.
  c.train.baselines = ('zero_shot', 'ridge', 'reweighted')

  # --mode=sweep: one run per value, compared on validation pairs only.
  c.sweep = ml_collections.ConfigDict()
  c.sweep.param = 'model.hidden'
  c.sweep.grid = ((256,), (512,), (512, 512))
  # Also score every run on the chosen run's test pairs, each minus the
  # first grid value (paired): to report a comparison (e.g. of losses),
  # never to choose.
  c.sweep.compare_on_test = False

  c.ckpt = ml_collections.ConfigDict()
  c.ckpt.every = 40
  c.ckpt.keep = 2
  c.ckpt.keep_best = True  # also keep the best by validation Spearman
  c.ckpt.eval_step = 'best'  # --mode=eval: 'best', 'latest' or a step

  c.mesh = (('data', -1),)  # -1: all devices

  c.embed = ml_collections.ConfigDict()
  # 'clip': the Flax CLIP tower (jitted, sharded: the fast path); 'hf': any
  # image model transformers' AutoModel loads (DINOv2, ViT, ConvNeXt, ...),
  # in PyTorch on one device (needs torch): rdmjax.embed.hf_vision.
  c.embed.backend = 'clip'
  c.embed.model = 'openai/clip-vit-base-patch32'  # HF id or local dir
  c.embed.layers = ('image_embeds',)  # see rdmjax.embed.clip_vision
  # backend 'hf': 'pooler_output', 'cls', 'mean', 'hidden_states.K' (mean
  # of the K-th hidden state), 'hidden_states.K.cls' (its class token).
  c.embed.hf_layers = ('pooler_output',)
  # backend 'hf': caches WORKDIR/embeddings/<name>_<layer>.npz and
  # <name>.npz (first layer); '' = the last part of the model id or folder.
  c.embed.hf_name = ''
  c.embed.hf_device = 'auto'  # backend 'hf': 'auto' (CUDA if any), 'cpu'
  c.embed.batch_size = 64
  c.embed.dtype = 'float32'
  c.embed.random_init = False  # a random tower (tests, benchmarks)
  # f32 matmul precision: 'highest' (exact f32; GPUs use TF32 otherwise)
  # or 'default'. Ignored for bfloat16.
  c.embed.precision = 'highest'
  # --mode=bench with bench.suite='clip': images/s per batch size/dtype.
  c.embed.bench_batch_sizes = (256, 512, 1024)
  c.embed.bench_dtypes = ('bfloat16', 'float32')

  c.bench = ml_collections.ConfigDict()
  c.bench.suite = 'rdm'  # 'rdm', 'pairs', 'clip'
  c.bench.n = 2000
  c.bench.d = 39548
  c.bench.repeats = 3
  # rdm suite baselines: numpy's f32 RDM, numpy's z @ z.T alone on prepared
  # rows (gram), the plain jitted 1 - z @ z.T per precision, scipy pdist and
  # rsatoolbox calc_rdm (host, once).
  c.bench.baselines = ('numpy', 'gram', 'plain', 'scipy', 'rsatoolbox')
  c.bench.ref_rows = 1024  # rdm suite: rows of the float64 error reference
  c.bench.precisions = ('float32', 'tf32', 'bf16_3x', 'bf16')  # rdm suite
  # rdm suite: scipy/rsatoolbox run on the first baseline_d columns and their
  # time is scaled to d (0 = all d; they take ~1 min at 2000 x 39548 on CPU).
  c.bench.baseline_d = 0
  c.bench.tile = 0  # rdm suite: kernels.rdm tile (0 = its default)
  # rdm suite: also the RDM sharded over all devices (one triangle) beside
  # full row blocks per device and one device.
  c.bench.mesh = False
  c.bench.emb_dim = 512  # pairs suite: embedding width of the MLP input
  # pairs suite: memory for per-pair row gathers (uniform, naive), which
  # copy two response rows per pair; caps their pairs per call.
  c.bench.gather_mb = 1024
  c.bench.naive_pairs = 4096  # pairs suite: pairs per naive host gather

  if arg.tiny:
    c.data.synthetic.update(
      n_train=120,
      n_test=30,
      n_vertices_lh=300,
      n_vertices_rh=320,
      image_size=64,
    )
    c.rdm.top_k = 2
    c.pairs.block_size = 32
    c.pairs.num_pairs = 496
    c.pairs.eval_tile = 32
    c.model.hidden = (32,)
    c.model.channels = (4, 8)
    c.model.image_size = 32
    c.train.steps = 30
    c.train.log_every = 10
    c.train.eval_every = 10
    c.ckpt.every = 10
    c.bench.n = 256
    c.bench.d = 512
  if arg.nsd:  # NSD subj01's sizes
    c.data.synthetic.update(
      n_train=9841,
      n_test=159,
      n_vertices_lh=19004,
      n_vertices_rh=20544,
      image_size=425,
    )
  return c
