"""Peer comparison in the same harness: the `lightly` package (github.com/lightly-ai/lightly)
trained on the same data, backbone, resolution and budget as our runs of the methods both have
(SimCLR, MoCo v2, BYOL, PIRL, DINO), evaluated by the same code; kNN / linear accuracy and
training images/s side by side with ours (``benchmarks/quality.py``; issue 9).

The lightly side is a plain torch training loop that calls lightly's API only: its dataset class
(``LightlyDataset``), view transforms, projection / prediction heads, losses, momentum utilities
(``update_momentum``, ``deactivate_requires_grad``, ``batch_shuffle``, ``cosine_schedule``), its
LARS optimiser, ``get_weight_decay_parameters`` and ``CosineWarmupScheduler``, assembled as in
lightly's own examples and ImageNet benchmarks (``benchmarks/imagenet/resnet50/<method>.py`` in
its repository).  No lightly code is copied here.

What is matched, and how
------------------------
* **Data.**  The same images: the training file list comes from the method's own config (its
  ``train_dataloader.dataset``, built with mmpretrain and its ``indices``), i.e. the first 10000
  images of ``data/fashion_mnist/meta/train.txt`` for the configs that set ``indices=10000``
  (SimCLR, BYOL, PIRL, DINO) and all 60000 for ``configs/mocov2``'s config, which has no
  ``indices`` (``--preset gpu``: all 60000 for every method, as quality.py).  lightly's
  ``LightlyDataset`` reads these PNGs from disk for every sample (as our ``LoadImageFromFile``
  does), as 28 x 28 3-channel RGB PIL images (Fashion-MNIST is gray: the three channels are
  equal, as after our ``LoadImageFromFile``); the random resized crops make them 32 px (16 px
  local crops, 63 px jigsaw crops), as in our pipelines.  Normalisation: ImageNet mean / std in
  both (``IMAGENET_NORMALIZE`` = our data preprocessor's 123.675 ... / 58.395 ...).  Same batch
  (64), same ``drop_last`` as the config, shuffled, seed 0, the preset's loader workers.
* **Backbone.**  The exact module we train: ``cfg.model.backbone`` built by mmpretrain
  (ResNet-18, stem and base channels 32, last stage 256 channels, its ``zero_init_residual`` and
  initialisation; configs/mocov2 gets quality.py's ``OVERRIDES`` to the same half width),
  globally average-pooled to 256-d as our necks do.  Its weights are saved as
  ``dict(state_dict={'backbone.' + k: v})``, which ``mmssl_ext.apis.knn_eval.
  load_backbone_weights`` loads unchanged (BatchNorm running statistics included), so
  ``quality.evaluate`` scores both implementations with the same code: weighted kNN k=20 /
  k=200 of all 60k training images against the 10k test images, and the linear probe.
* **Budget.**  quality.py's semantics: ``--budget`` backbone-equivalent 32 x 32 images (pixels
  through the *trained* backbone / 32^2), ``iterations = ceil(budget / (64 * per-sample))``.
  The per-sample figure of the lightly side is measured as quality.py measures ours: a forward
  pre-hook on the trained backbone over one real batch of lightly's views, on a throw-away copy
  of the lightly model.  SimCLR, BYOL: 2 x 32 px = 2; PIRL: 32 px + 9 x 16 px = 3.25; DINO:
  2 x 32 px + 6 x 16 px = 3.5; MoCo v2: 1, in both implementations: only the query view goes
  through the trained backbone, the key view through the momentum encoder, and momentum /
  teacher encoders are extra compute that the budget does not count (quality.py's rule; so MoCo
  gets twice SimCLR's iterations).  The JSON records quality.py's figure for our model next to
  it (``ours_images_per_sample``); a difference would be reported as a note.
* **Schedule.**  The config's schedule rescaled by quality.py's own ``rescale_schedule`` to the
  iteration count (linear warm-up from 0.1x, then cosine to 0), run by lightly's
  ``CosineWarmupScheduler``, per iteration.  Hyper-parameters are read from the config (after
  quality.py's overrides), not restated: learning rate, momentum, weight decay and which
  parameters it skips, LARS or SGD, temperatures, queue size, projection sizes, EMA momentum
  and its schedule, DINO's teacher temperature warm-up, frozen last layer and gradient clipping;
  the views' crop sizes / scales, flip, jitter, grayscale and solarisation probabilities.  Each
  row of the JSON records the values used (``hparams``) and lightly's transforms as built
  (``lightly_transforms``).
* **Speed.**  ``images_per_second`` = source images (iterations x 64) / training seconds, the
  seconds counted as quality.py counts ours: from building the model and the data loader to the
  saved checkpoint, evaluation excluded.  ``loop_images_per_second`` leaves out the first 10 %
  of the iterations (loader start-up).  Same threads and loader workers as our run (the
  preset's, or ``--threads`` / ``--workers``).  ``--ours`` trains and evaluates our side too,
  through quality.py's ``run_method``, in the same invocation, and adds the ratio.

What cannot be matched (recorded per row in ``notes``)
------------------------------------------------------
* Everything outside the method: torch loop vs mmengine Runner (hooks, logging, message hub),
  torchvision vs mmcv / mmpretrain image transforms (same operations and parameters, other
  implementations: PIL vs cv2 resampling, jitter), augmentation in the loader workers for both
  but normalisation in the workers (lightly) vs in the model's data preprocessor (ours).
* One-step differences of the schedule: lightly's warm-up reaches ``(s + 1) / w`` at step ``s``
  (mmengine ``LinearLR``: ``s / w``); its cosine ends exactly at 0 on the last step.
* LARS: lightly's applies the learning rate after the momentum buffer, mmpretrain's before
  (identical for a constant learning rate; with a schedule, the buffer carries older rates).
* BYOL: the crops are resized bicubic in ours, bilinear in lightly's ``BYOLView*Transform``
  (no interpolation argument); lightly's projector / predictor end with a bias (ours: none).
* MoCo v2: key-encoder BatchNorm shuffling is a no-op on one device in both.
* DINO: lightly's ``DINOTransform`` gives the second global crop half the colour-jitter strength
  (its ``cj_strength`` argument is not passed to that view), so the views are built from
  lightly's ``DINOViewTransform`` directly with the config's values.  The teacher's BatchNorm
  buffers are not copied from the student (ours copies them); the teacher runs on batch
  statistics in both, so this does not change training.
* PIRL: lightly has PIRL's transform but no PIRL model, loss or memory bank.
  ``PIRLTransform`` itself cannot reproduce our views: it cuts the jigsaw from the *uncropped*
  input, which must already be ``input_size`` px (Fashion-MNIST is 28 px), into patches of
  ``input_size // 3`` with no gap (ours: a 63 px random resized crop, scale 0.6-1, 3 x 3 cells of
  21 px, a randomly placed 16 px patch in each), and its image view is a crop only (ours: crop,
  brightness / contrast jitter, flip).  So the lightly side uses lightly's ``Jigsaw`` (the
  transform ``PIRLTransform`` is built on) after a 63 px random resized crop, with our patch
  jitter, and lightly's ``SimCLRViewTransform`` with our image-view values.  The loss is
  "PIRL-style": lightly's ``NTXentLoss`` with a memory bank of 4096 x 128 between the jigsaw
  embedding ``g`` (per-patch linear 256->128, concatenation, linear 1152->128: lightly
  ``ProjectionHead`` blocks) and the image embedding ``f`` (linear 256->128), temperature 0.07.
  Ours: PIRL's memory bank of one momentum-averaged (mu 0.5) embedding per training image,
  ``loss = lambda L(m_I, g) + (1 - lambda) L(m_I, f)`` with ``m_I`` the bank entry as positive
  and 4096 negatives sampled from the bank.  lightly's bank is a FIFO queue of recent
  ``f`` embeddings (no per-image entries, so no ``m_I`` and no image-vs-memory term); its
  positive is the current ``f``, with gradient.  As in ours, the backbone's BatchNorm running
  statistics come from the image views only (our ``transformed_bn_stats=False``).

    .venv/bin/python benchmarks/peers.py --budget 200000 --ours          # 2 CPU cores
    .venv/bin/python benchmarks/peers.py --preset gpu --ours              # a lent GPU
    .venv/bin/python benchmarks/peers.py --methods dino --budget 100000 --random-init
    .venv/bin/python benchmarks/peers.py --budget 2000 --skip-eval --tag smoke   # it runs

Writes ``benchmarks/results/peers_<tag>.json`` and ``.md`` (default tag: the preset and the
budget), after every method.
"""
import argparse
import contextlib
import copy
import json
import math
import os
import os.path as osp
import random
import sys
import time
import traceback
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BENCH = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(BENCH)
for _p in (REPO, BENCH):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import quality  # noqa: E402  (benchmarks/quality.py: configs, budget, schedule, evaluation)
from benchmarks import report as rep  # noqa: E402  (command, machine, date, writing)
from mmssl_ext.models.utils import bn_running_stats_frozen  # noqa: E402

#: the methods lightly and we both have (names as in quality.METHODS)
PEER_METHODS = ('simclr', 'mocov2', 'byol', 'pirl', 'dino')
OURS = 'mmssl_ext/mmpretrain'


# ------------------------------------------------------------------------------ config side
def method_cfg(name: str, preset: dict):
    """The method's config as quality.py runs it: OVERRIDES merged, the preset's data."""
    from mmssl_ext.utils.config import load_config
    cfg = load_config(osp.join(REPO, quality.METHODS[name]))
    cfg.merge_from_dict(quality.OVERRIDES.get(name, {}))
    quality.apply_data(cfg, preset['full_train'], preset['workers'])
    return cfg


def training_files(cfg):
    """(root, relative paths) of the images the config trains on (mmpretrain builds the
    dataset, ``indices`` included)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.pipeline = []
    ds_cfg.pop('_scope_', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(ds_cfg)
    paths = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    root = osp.commonpath([osp.dirname(p) for p in paths])
    return root, [osp.relpath(p, root) for p in paths]


def schedule(cfg, iters: int) -> dict:
    """The config's LinearLR warm-up + CosineAnnealingLR, rescaled to ``iters`` by quality.py."""
    cfg = copy.deepcopy(cfg)
    quality.rescale_schedule(cfg, iters)
    scheds = cfg.param_scheduler
    scheds = list(scheds if isinstance(scheds, (list, tuple)) else [scheds])
    types = [s['type'] for s in scheds]
    if types != ['LinearLR', 'CosineAnnealingLR']:
        raise ValueError(f'{cfg.filename}: expected LinearLR + CosineAnnealingLR, got {types}')
    warm, cos = scheds
    if warm.get('begin', 0) != 0 or cos['begin'] != warm['end'] or cos['end'] != iters:
        raise ValueError(f'{cfg.filename}: unexpected scheduler ranges {scheds}')
    lr = cfg.optim_wrapper.optimizer.lr
    eta_min = cos.get('eta_min', None)
    if eta_min is None:
        eta_min = cos.get('eta_min_ratio', 0.0) * lr
    return dict(warmup_iters=int(warm['end']), warmup_start_factor=warm.get('start_factor', 1 / 3),
                final_lr_factor=eta_min / lr, iters=iters)


@contextlib.contextmanager
def quiet_mmengine() -> Iterator[None]:
    """mmengine's logger at WARNING (``init_weights`` logs every parameter at INFO)."""
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_backbone(cfg):
    """``cfg.model.backbone`` as mmpretrain builds it, initialised as in our models."""
    from mmengine.registry import DefaultScope
    from mmssl_ext.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmpretrain')), \
            quiet_mmengine():
        net = MODELS.build(copy.deepcopy(cfg.model.backbone))
        net.init_weights()
    return net


class PooledBackbone(nn.Module):
    """The mmpretrain backbone, last stage globally average-pooled: ``B x C`` features (what
    lightly's heads take, and what our necks pool)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.net(x)
        feat = feat[-1] if isinstance(feat, (tuple, list)) else feat
        return F.adaptive_avg_pool2d(feat, 1).flatten(1)


# ---------------------------------------------------------------------- views of a config
def _view_spec(view: list) -> dict:
    """An mmpretrain view pipeline as lightly view-transform parameters."""
    spec = dict(size=None, scale=(0.08, 1.0), interpolation='bilinear', hf_prob=0.0,
                cj_prob=0.0, cj_bright=0.0, cj_contrast=0.0, cj_sat=0.0, cj_hue=0.0,
                random_gray_scale=0.0, solarization_prob=0.0, gaussian_blur=0.0)

    def jitter(t, prob):
        spec.update(cj_prob=prob, cj_bright=t.get('brightness', 0.0),
                    cj_contrast=t.get('contrast', 0.0), cj_sat=t.get('saturation', 0.0),
                    cj_hue=t.get('hue', 0.0))

    for t in view:
        kind = t['type']
        if kind == 'RandomResizedCrop':
            spec.update(size=t['scale'], scale=tuple(t.get('crop_ratio_range', (0.08, 1.0))),
                        interpolation=t.get('interpolation', 'bilinear'))
        elif kind == 'RandomFlip':
            if t.get('direction', 'horizontal') != 'horizontal':
                raise ValueError(f'unmapped flip {t}')
            spec['hf_prob'] = t['prob']
        elif kind == 'RandomApply' and [s['type'] for s in t['transforms']] == ['ColorJitter']:
            jitter(t['transforms'][0], t['prob'])
        elif kind == 'ColorJitter':
            jitter(t, 1.0)
        elif kind == 'RandomGrayscale':
            spec['random_gray_scale'] = t['prob']
        elif kind == 'Solarize':
            if t.get('thr', 128) != 128:
                raise ValueError(f'lightly solarises at 128: unmapped {t}')
            spec['solarization_prob'] = t['prob']
        elif kind == 'GaussianBlur':
            spec['gaussian_blur'] = t.get('prob', 1.0)
        else:
            raise ValueError(f'no lightly equivalent mapped for the view transform {t}')
    if spec['size'] is None:
        raise ValueError(f'view without RandomResizedCrop: {view}')
    return spec


def _min_scale(spec: dict) -> float:
    """``min_scale`` of lightly's SimCLR / MoCo / BYOL views (their crops end at scale 1)."""
    if spec['scale'][1] != 1.0:
        raise ValueError(f"lightly's view has crop scale (min_scale, 1.0); the config has "
                         f"{spec['scale']}")
    return spec['scale'][0]


def config_views(cfg) -> List[dict]:
    """The view specs of a ``MultiView`` pipeline, one per view."""
    multi = [t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'MultiView']
    if len(multi) != 1:
        raise ValueError(f'{cfg.filename}: expected one MultiView transform')
    num, views = multi[0]['num_views'], multi[0]['transforms']
    num = [num] * len(views) if isinstance(num, int) else list(num)
    out = []
    for n, view in zip(num, views):
        out += [_view_spec(view)] * n
    return out


def _common(spec: dict, normalize: bool = True) -> dict:
    """lightly view-transform arguments shared by its SimCLR / MoCo / BYOL / DINO views;
    ``normalize=False``: views in [0, 1], not normalised (lightly's default normalises)."""
    kw = dict(cj_prob=spec['cj_prob'], cj_strength=1.0, cj_bright=spec['cj_bright'],
              cj_contrast=spec['cj_contrast'], cj_sat=spec['cj_sat'], cj_hue=spec['cj_hue'],
              random_gray_scale=spec['random_gray_scale'], gaussian_blur=spec['gaussian_blur'],
              hf_prob=spec['hf_prob'])
    if not normalize:
        kw['normalize'] = None
    return kw


def _rrc_interpolation(view) -> Optional[str]:
    """Interpolation of the first RandomResizedCrop inside a lightly view transform."""
    stack = [view]
    while stack:
        t = stack.pop(0)
        if type(t).__name__ == 'RandomResizedCrop':
            mode = t.interpolation
            return getattr(mode, 'value', str(mode))
        for attr in ('transform', 'transforms'):
            sub = getattr(t, attr, None)
            if sub is not None:
                stack.extend(sub if isinstance(sub, (list, tuple)) else [sub])
    return None


def _interp_notes(specs: List[dict], views) -> List[str]:
    notes = []
    for i, (spec, view) in enumerate(zip(specs, views)):
        got = _rrc_interpolation(view)
        if got is not None and got != spec['interpolation']:
            notes.append(f"view {i}: crop resized {got} (lightly), {spec['interpolation']} "
                         '(ours); lightly\'s transform has no interpolation argument')
    return sorted(set(notes))


# ------------------------------------------------------------------------ lightly models
class Peer(nn.Module):
    """A lightly model on our backbone: its transform, parameters, loss step and records."""

    name = ''
    normalize_views = True  # False: transform() makes [0, 1] views (variants.py lightly-views)

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.backbone = PooledBackbone(build_backbone(cfg))
        self.notes: List[str] = []
        self.hparams: Dict[str, object] = {}
        self.diagnostics: Dict[str, float] = {}
        self.clip_norm: Optional[float] = None  # set by optimizer() from the config

    # parameters / optimiser
    def trained_modules(self) -> List[nn.Module]:
        raise NotImplementedError

    def param_groups(self, exclude_norm_bias: bool) -> List[dict]:
        from lightly.models.utils import get_weight_decay_parameters
        mods = self.trained_modules()
        if not exclude_norm_bias:
            return [dict(params=[p for m in mods for p in m.parameters() if p.requires_grad])]
        params, no_wd = get_weight_decay_parameters(mods)
        return [dict(params=[p for p in params if p.requires_grad]),
                dict(params=[p for p in no_wd if p.requires_grad], weight_decay=0.0)]

    def optimizer(self) -> torch.optim.Optimizer:
        ow = self.cfg.optim_wrapper
        opt = ow.optimizer
        pw = ow.get('paramwise_cfg', None) or {}
        keys = pw.get('custom_keys', {})
        if keys:  # mmpretrain's LARS recipes: no decay and no LARS scaling for BN and biases
            if set(keys) - {'bn', 'bias', 'downsample.1'} or any(
                    v.get('decay_mult', 1) != 0 for v in keys.values()):
                raise ValueError(f'unmapped paramwise_cfg {pw}')
            exclude = True
        elif pw:
            if any(pw.get(k, 1) != 0 for k in ('norm_decay_mult', 'bias_decay_mult')) or (
                    set(pw) - {'norm_decay_mult', 'bias_decay_mult', 'flat_decay_mult'}):
                raise ValueError(f'unmapped paramwise_cfg {pw}')
            # flat (1-D) parameters of these models are norm weights and biases only
            exclude = True
        else:
            exclude = False
        groups = self.param_groups(exclude)
        if opt.type == 'LARS':
            from lightly.utils.lars import LARS
            optim = LARS(groups, lr=opt.lr, momentum=opt.get('momentum', 0.0),
                         weight_decay=opt.get('weight_decay', 0.0),
                         trust_coefficient=opt.get('eta', 0.001))
        elif opt.type == 'SGD':
            optim = torch.optim.SGD(groups, lr=opt.lr, momentum=opt.get('momentum', 0.0),
                                    weight_decay=opt.get('weight_decay', 0.0),
                                    nesterov=opt.get('nesterov', False))
        else:
            raise ValueError(f'unmapped optimizer {opt.type}')
        self.hparams.update(
            optimizer=('lightly.utils.lars.LARS' if opt.type == 'LARS' else 'torch SGD'),
            lr=opt.lr, momentum=opt.get('momentum', 0.0),
            weight_decay=opt.get('weight_decay', 0.0),
            no_decay=('BatchNorm and biases (lightly get_weight_decay_parameters)'
                      + ('; no LARS scaling for them' if opt.type == 'LARS' else ''))
            if exclude else 'none (all parameters decayed)')
        if opt.type == 'LARS':
            self.hparams['lars_trust_coefficient'] = opt.get('eta', 0.001)
        clip = ow.get('clip_grad', None)
        self.clip_norm = clip.get('max_norm') if clip else None
        if self.clip_norm:
            self.hparams['clip_grad_total_norm'] = self.clip_norm
        return optim

    # one iteration
    def transform(self):
        raise NotImplementedError

    def loss(self, views: List[torch.Tensor], it: int, iters: int) -> torch.Tensor:
        raise NotImplementedError

    def before_optimizer_step(self, it: int) -> None:
        if self.clip_norm:
            torch.nn.utils.clip_grad_norm_(
                [p for m in self.trained_modules() for p in m.parameters()], self.clip_norm)

    def after_optimizer_step(self, it: int, iters: int) -> None:
        pass

    def backbone_state(self) -> Dict[str, torch.Tensor]:
        state = self.backbone.net.state_dict()
        return {'backbone.' + k: v.detach().cpu() for k, v in state.items()}


class SimCLRPeer(Peer):
    """lightly SimCLR: SimCLRTransform, SimCLRProjectionHead, NTXentLoss (in-batch negatives),
    LARS, both views through the backbone in one batch (as in lightly's benchmark and ours)."""

    name = 'simclr'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        neck, head = cfg.model.neck, cfg.model.head
        if neck.type != 'NonLinearNeck' or not neck.get('with_last_bn', True) or neck.get(
                'with_bias', False):
            raise ValueError(f'unmapped SimCLR neck {neck}')
        self.head = SimCLRProjectionHead(neck.in_channels, neck.hid_channels, neck.out_channels,
                                         num_layers=neck.get('num_layers', 2), batch_norm=True)
        self.criterion = NTXentLoss(temperature=head.temperature)
        self.hparams.update(projection=f'SimCLRProjectionHead({neck.in_channels}, '
                            f'{neck.hid_channels}, {neck.out_channels}, BN)',
                            loss=f'NTXentLoss(temperature={head.temperature})')

    def trained_modules(self):
        return [self.backbone, self.head]

    def transform(self):
        from lightly.transforms import SimCLRTransform
        specs = config_views(self.cfg)
        if len(specs) != 2 or specs[0] != specs[1]:
            raise ValueError('SimCLR: expected two identical views')
        s = specs[0]
        t = SimCLRTransform(input_size=s['size'], min_scale=_min_scale(s),
                            **_common(s, self.normalize_views))
        self.notes += _interp_notes(specs, t.transforms)
        return t, specs

    def loss(self, views, it, iters):
        z = self.head(self.backbone(torch.cat(views)))
        z0, z1 = z.chunk(2)
        return self.criterion(z0, z1)


class MoCoV2Peer(Peer):
    """lightly MoCo v2: MoCoV2Transform, MoCoProjectionHead, NTXentLoss with a memory bank (the
    queue), momentum encoder by ``update_momentum`` (constant), BN shuffle by
    ``batch_shuffle`` (as in lightly's MoCo v2 benchmark)."""

    name = 'mocov2'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        model, neck = cfg.model, cfg.model.neck
        if neck.type != 'MoCoV2Neck':
            raise ValueError(f'unmapped MoCo neck {neck}')
        self.head = MoCoProjectionHead(neck.in_channels, neck.hid_channels, neck.out_channels)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.head_momentum = copy.deepcopy(self.head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.head_momentum)
        self.m = 1.0 - model.momentum  # mmpretrain's EMA momentum is the weight of the new value
        self.criterion = NTXentLoss(temperature=model.head.temperature,
                                    memory_bank_size=(model.queue_len, neck.out_channels))
        self.hparams.update(
            projection=f'MoCoProjectionHead({neck.in_channels}, {neck.hid_channels}, '
                       f'{neck.out_channels})',
            loss=f'NTXentLoss(temperature={model.head.temperature}, '
                 f'memory_bank_size=({model.queue_len}, {neck.out_channels}))',
            key_encoder_momentum=self.m)

    def trained_modules(self):
        return [self.backbone, self.head]

    def transform(self):
        from lightly.transforms import MoCoV2Transform
        specs = config_views(self.cfg)
        if len(specs) != 2 or specs[0] != specs[1]:
            raise ValueError('MoCo v2: expected two identical views')
        s = specs[0]
        t = MoCoV2Transform(input_size=s['size'], min_scale=_min_scale(s),
                            **_common(s, self.normalize_views))
        self.notes += _interp_notes(specs, t.transforms)
        return t, specs

    def loss(self, views, it, iters):
        from lightly.models.utils import batch_shuffle, batch_unshuffle, update_momentum
        update_momentum(self.backbone, self.backbone_momentum, m=self.m)
        update_momentum(self.head, self.head_momentum, m=self.m)
        query = self.head(self.backbone(views[0]))
        with torch.no_grad():
            x, shuffle = batch_shuffle(views[1])
            key = batch_unshuffle(self.head_momentum(self.backbone_momentum(x)), shuffle)
        return self.criterion(query, key)


class BYOLPeer(Peer):
    """lightly BYOL: BYOLView1/2Transform, BYOLProjectionHead + BYOLPredictionHead,
    NegativeCosineSimilarity (symmetric, x2 as in lightly's benchmark and ours), LARS, target by
    ``update_momentum`` with ``cosine_schedule`` towards 1."""

    name = 'byol'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        model, neck, pred = cfg.model, cfg.model.neck, cfg.model.head.predictor
        if model.head.loss.get('shift_factor', 0.0) != 0 or model.head.loss.get(
                'scale_factor', 1.0) != 1:
            raise ValueError(f'unmapped BYOL loss {model.head.loss}')
        self.projection = BYOLProjectionHead(neck.in_channels, neck.hid_channels,
                                             neck.out_channels)
        self.prediction = BYOLPredictionHead(pred.in_channels, pred.hid_channels,
                                             pred.out_channels)
        self.backbone_target = copy.deepcopy(self.backbone)
        self.projection_target = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.backbone_target)
        deactivate_requires_grad(self.projection_target)
        self.m0 = 1.0 - model.base_momentum  # mmpretrain CosineEMA: weight of the new value
        self.criterion = NegativeCosineSimilarity()
        self.hparams.update(
            projection=f'BYOLProjectionHead({neck.in_channels}, {neck.hid_channels}, '
                       f'{neck.out_channels})',
            prediction=f'BYOLPredictionHead({pred.in_channels}, {pred.hid_channels}, '
                       f'{pred.out_channels})',
            loss='2 * (NegativeCosineSimilarity(p0, z1) + NegativeCosineSimilarity(p1, z0))',
            target_momentum=f'cosine_schedule {self.m0} -> 1.0')
        self.notes.append('projector / predictor last linear layer has a bias in lightly '
                          '(BYOLProjectionHead / BYOLPredictionHead), none in ours')

    def trained_modules(self):
        return [self.backbone, self.projection, self.prediction]

    def transform(self):
        from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform
        specs = config_views(self.cfg)
        if len(specs) != 2:
            raise ValueError('BYOL: expected two views')
        views = [cls(input_size=s['size'], min_scale=_min_scale(s),
                     solarization_prob=s['solarization_prob'],
                     **_common(s, self.normalize_views))
                 for cls, s in zip((BYOLView1Transform, BYOLView2Transform), specs)]
        t = BYOLTransform(view_1_transform=views[0], view_2_transform=views[1])
        self.notes += _interp_notes(specs, t.transforms)
        return t, specs

    def loss(self, views, it, iters):
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule
        m = cosine_schedule(it, iters, self.m0, 1.0)
        update_momentum(self.backbone, self.backbone_target, m=m)
        update_momentum(self.projection, self.projection_target, m=m)
        p0 = self.prediction(self.projection(self.backbone(views[0])))
        p1 = self.prediction(self.projection(self.backbone(views[1])))
        with torch.no_grad():
            z0 = self.projection_target(self.backbone_target(views[0]))
            z1 = self.projection_target(self.backbone_target(views[1]))
        return 2 * self.criterion(p0, z1) + 2 * self.criterion(p1, z0)


class PIRLPeer(Peer):
    """PIRL-style with lightly's pieces (lightly has no PIRL model / loss): its ``Jigsaw``
    transform (the core of ``PIRLTransform``) and ``SimCLRViewTransform``, ``ProjectionHead``
    blocks for f and g, ``NTXentLoss`` with a memory bank between g(jigsaw) and f(image)."""

    name = 'pirl'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import NTXentLoss
        from lightly.models.modules.heads import ProjectionHead
        model = cfg.model
        neck, tneck = model.neck, model.transform_neck
        if neck.type != 'LinearNeck' or neck.get('norm_cfg') or tneck.type != \
                'JigsawProjectionNeck':
            raise ValueError(f'unmapped PIRL necks {neck} / {tneck}')
        if model.get('transformed_bn_stats', False):
            raise ValueError('transformed_bn_stats=True is not mapped')
        self.num_patches = tneck.get('num_patches', 9)
        pc = tneck.get('patch_channels', 128)
        self.image_head = ProjectionHead([(neck.in_channels, neck.out_channels, None, None)])
        self.patch_head = ProjectionHead([(tneck.in_channels, pc, None, None)])
        self.jigsaw_head = ProjectionHead([(self.num_patches * pc, tneck.out_channels, None,
                                            None)])
        loss = model.loss
        if loss.type != 'InfoNCELoss':
            raise ValueError(f'unmapped PIRL loss {loss}')
        negatives = model.memory_bank.num_negatives
        self.criterion = NTXentLoss(temperature=loss.temperature,
                                    memory_bank_size=(negatives, neck.out_channels))
        self.hparams.update(
            image_head=f'ProjectionHead linear {neck.in_channels}->{neck.out_channels}',
            jigsaw_head=f'ProjectionHead linear {tneck.in_channels}->{pc} per patch, concat, '
                        f'linear {self.num_patches * pc}->{tneck.out_channels}',
            loss=f'NTXentLoss(temperature={loss.temperature}, memory_bank_size=({negatives}, '
                 f'{neck.out_channels})) of (g(jigsaw), f(image))',
            bn_running_stats='image views only')
        self.notes += [
            'lightly has no PIRL model / loss / per-image memory bank: PIRL-style NT-Xent '
            f'between g(jigsaw) and f(image) with a FIFO queue of {negatives} f embeddings as '
            'negatives; ours: InfoNCE against the per-image bank entry m_I (momentum '
            f"{model.memory_bank.momentum}), {negatives} negatives sampled from the bank of "
            f"{model.memory_bank.length}, loss = {model.loss_lambda} L(m_I, g) + "
            f'{1 - model.loss_lambda} L(m_I, f)',
            "PIRLTransform not usable as is (jigsaw of the uncropped, pre-sized image, patches "
            "without gaps, image view without jitter / flip): lightly's Jigsaw after a random "
            'resized crop, as our JigsawPatches']

    def trained_modules(self):
        return [self.backbone, self.image_head, self.patch_head, self.jigsaw_head]

    def transform(self):
        from lightly.transforms import Jigsaw, SimCLRViewTransform
        from lightly.transforms import torchvision_transforms as T
        from lightly.transforms.multi_view_transform import MultiViewTransform
        from lightly.transforms.utils import IMAGENET_NORMALIZE
        views = [t for t in self.cfg.train_dataloader.dataset.pipeline if t['type'] == 'PIRLViews']
        if len(views) != 1:
            raise ValueError('PIRL: expected one PIRLViews transform')
        image = _view_spec(views[0]['image_pipeline'])
        tp = views[0]['transform_pipeline']
        if len(tp) != 1 or tp[0]['type'] != 'JigsawPatches':
            raise ValueError(f'unmapped PIRL transform pipeline {tp}')
        jig = tp[0]
        grid, crop, size = jig.get('grid', 3), jig.get('crop_size', 255), jig.get('patch_size', 64)
        if grid * grid != self.num_patches:
            raise ValueError('PIRL: grid and num_patches differ')
        if jig.get('num_permutations', 1000) != math.factorial(grid * grid):
            self.notes.append('lightly Jigsaw draws from all permutations; the config uses '
                              f"a set of {jig.get('num_permutations', 1000)}")
        patch = dict(_view_spec([dict(type='RandomResizedCrop', scale=size)]
                                + list(jig.get('patch_pipeline') or [])))
        image_view = SimCLRViewTransform(input_size=image['size'], min_scale=_min_scale(image),
                                         **_common(image, self.normalize_views))
        patch_tf = [T.RandomApply([T.ColorJitter(brightness=patch['cj_bright'],
                                                 contrast=patch['cj_contrast'],
                                                 saturation=patch['cj_sat'],
                                                 hue=patch['cj_hue'])], p=patch['cj_prob'])]
        if patch['random_gray_scale']:
            patch_tf.append(T.RandomGrayscale(p=patch['random_gray_scale']))
        if patch['hf_prob'] or patch['solarization_prob'] or patch['gaussian_blur']:
            raise ValueError('PIRL: unmapped patch transform')
        patch_tf += [T.ToTensor(), T.Normalize(**IMAGENET_NORMALIZE)]
        jigsaw_view = T.Compose([
            T.RandomResizedCrop(crop, scale=tuple(jig.get('crop_scale', (0.6, 1.0)))),
            Jigsaw(n_grid=grid, img_size=crop, crop_size=size, transform=T.Compose(patch_tf)),
        ])
        specs = [image, dict(size=size, grid=grid, crop_size=crop,
                             crop_scale=tuple(jig.get('crop_scale', (0.6, 1.0))), **{
                                 k: patch[k] for k in ('cj_prob', 'cj_bright', 'cj_contrast')})]
        self.notes += _interp_notes(specs[:1], [image_view])
        return MultiViewTransform([image_view, jigsaw_view]), specs

    def loss(self, views, it, iters):
        img, patches = views
        f = self.image_head(self.backbone(img))
        with bn_running_stats_frozen(self.backbone):
            feats = self.backbone(patches.flatten(0, 1))
        g = self.jigsaw_head(self.patch_head(feats).reshape(img.shape[0], -1))
        return self.criterion(g, f)


class DINOPeer(Peer):
    """lightly DINO: DINOViewTransform views, DINOProjectionHead (frozen last layer via
    ``cancel_last_layer_gradients``), DINOLoss (teacher-temperature warm-up, centring), teacher
    by ``update_momentum`` with ``cosine_schedule`` after each step, SGD with gradient clipping
    (the recipe lightly's ResNet-50 benchmark uses)."""

    name = 'dino'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        model, head, loss = cfg.model, cfg.model.head, cfg.model.loss
        if head.get('num_layers', 3) != 3:
            raise ValueError('lightly DINOProjectionHead has 3 layers')
        if model.get('neck') and model.neck.type != 'GlobalAveragePooling':
            raise ValueError(f'unmapped DINO neck {model.neck}')
        self.freeze_iters = int(model.get('freeze_last_layer_iters', 0))

        def dino_head():
            return DINOProjectionHead(
                head.in_channels, head.hidden_channels, head.bottleneck_channels,
                head.out_channels, batch_norm=head.get('use_bn', False),
                freeze_last_layer=self.freeze_iters,
                norm_last_layer=head.get('norm_last_layer', True))

        self.head = dino_head()
        self.backbone_teacher = copy.deepcopy(self.backbone)
        # the teacher starts as a copy of the student (a weight-normed layer cannot be
        # deep-copied: a new head, loaded with the student's weights)
        self.head_teacher = dino_head()
        self.head_teacher.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.backbone_teacher)
        deactivate_requires_grad(self.head_teacher)
        self.num_global = loss.get('num_global_crops', 2)
        self.criterion = DINOLoss(
            output_dim=head.out_channels, warmup_teacher_temp=loss.warmup_teacher_temp,
            teacher_temp=loss.teacher_temp, warmup_teacher_temp_epochs=loss.warmup_iters,
            student_temp=loss.student_temp, center_momentum=loss.center_momentum)
        self.m0 = model.base_momentum  # our DINO: the teacher's momentum itself
        self.hparams.update(
            head=f'DINOProjectionHead({head.in_channels}, {head.hidden_channels}, '
                 f'{head.bottleneck_channels}, {head.out_channels}, batch_norm='
                 f"{head.get('use_bn', False)}, norm_last_layer="
                 f"{head.get('norm_last_layer', True)})",
            freeze_last_layer_iters=self.freeze_iters,
            loss=f'DINOLoss(teacher_temp {loss.warmup_teacher_temp} -> {loss.teacher_temp} '
                 f'over {loss.warmup_iters} iterations, student_temp {loss.student_temp}, '
                 f'center_momentum {loss.center_momentum})',
            teacher_momentum=f'cosine_schedule {self.m0} -> 1.0, after each step')

    def trained_modules(self):
        return [self.backbone, self.head]

    def transform(self):
        from lightly.transforms import DINOViewTransform
        from lightly.transforms.multi_view_transform import MultiViewTransform
        specs = config_views(self.cfg)
        views = []
        for s in specs:
            kw = _common(s, self.normalize_views)
            kw['gaussian_blur'] = s['gaussian_blur']
            views.append(DINOViewTransform(crop_size=s['size'], crop_scale=s['scale'],
                                           solarization_prob=s['solarization_prob'], **kw))
        self.notes += _interp_notes(specs, views)
        self.notes.append("views from DINOViewTransform: lightly's DINOTransform would jitter "
                          'the second global crop at half strength (it drops cj_strength there)')
        return MultiViewTransform(views), specs

    def loss(self, views, it, iters):
        g = torch.cat(views[:self.num_global])
        with torch.no_grad():
            t = self.head_teacher(self.backbone_teacher(g))
        s = [self.head(self.backbone(g))]
        if len(views) > self.num_global:
            s.append(self.head(self.backbone(torch.cat(views[self.num_global:]))))
        s = torch.cat(s)
        if it == iters - 1 or it % max(1, iters // 20) == 0:
            self._diagnose(t, it)
        return self.criterion(list(t.chunk(self.num_global)), list(s.chunk(len(views))),
                              epoch=it)

    @torch.no_grad()
    def _diagnose(self, t: torch.Tensor, it: int) -> None:
        """Teacher collapse check: mean per-sample entropy (-> 1: uniform collapse) and entropy
        of the batch-mean distribution (-> 0: one-prototype collapse), both / log K."""
        c = self.criterion
        temp = float(c.teacher_temp_schedule[it]) if it < c.warmup_teacher_temp_epochs \
            else c.teacher_temp
        p = F.softmax((t - c.center.flatten()) / temp, dim=-1)
        log_k = math.log(p.shape[-1])
        ent = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean()) / log_k
        pm = p.mean(0)
        ent_mean = float(-(pm * pm.clamp_min(1e-12).log()).sum()) / log_k
        self.diagnostics = dict(iteration=it, teacher_entropy=round(ent, 4),
                                teacher_batch_mean_entropy=round(ent_mean, 4))

    def before_optimizer_step(self, it):
        super().before_optimizer_step(it)  # clipping first, then the freeze (as ours)
        self.head.cancel_last_layer_gradients(it)

    def after_optimizer_step(self, it, iters):
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule
        m = cosine_schedule(it, iters, self.m0, 1.0)
        update_momentum(self.backbone, self.backbone_teacher, m=m)
        update_momentum(self.head, self.head_teacher, m=m)


PEERS = {cls.name: cls for cls in (SimCLRPeer, MoCoV2Peer, BYOLPeer, PIRLPeer, DINOPeer)}


# ------------------------------------------------------------------------------ training
def _seed_worker(worker_id: int) -> None:
    # lightly's Jigsaw / solarisation / blur draw from numpy: give every worker its own stream
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def images_per_sample(name: str, cfg, dataset, num: int = 4, peer_cls=None) -> float:
    """Pixels through the *trained* backbone per sample, in 32 x 32 images: quality.py's
    measurement (a forward pre-hook over one real batch), on a throw-away lightly model.  Momentum
    / teacher encoders are copies, not hooked: not counted, as in quality.py."""
    probe = (peer_cls or PEERS[name])(cfg)
    probe.train()
    samples = [dataset[i][0] for i in range(num)]
    views = [torch.stack(v) for v in zip(*samples)]
    # the backbone inside the pooling wrapper: a model that calls it directly is counted too
    with quality.counting_pixels(getattr(probe.backbone, 'net', probe.backbone)) as pixels, \
            torch.no_grad():
        probe.loss(views, 0, 2)
    return sum(pixels) / num / quality.REFERENCE_PIXELS


def run_lightly(name: str, args, preset: dict, device: torch.device, peer_cls=None,
                cfg=None) -> dict:
    """lightly's side: the plain loop.  ``peer_cls`` (default ``PEERS[name]``) and ``cfg``
    (default the method's config for ``preset``) let ``variants.py`` run another model in it."""
    from lightly.data import LightlyDataset
    from lightly.utils.scheduler import CosineWarmupScheduler
    peer_cls = peer_cls or PEERS[name]
    cfg = cfg if cfg is not None else method_cfg(name, preset)
    batch = cfg.train_dataloader.batch_size
    _seed(args.seed)
    t0 = time.time()
    peer = peer_cls(cfg)
    transform, specs = peer.transform()
    root, files = training_files(cfg)
    dataset = LightlyDataset(root, transform=transform, filenames=files)
    build_seconds = time.time() - t0  # counted as training time, as in quality.py's timing
    per_sample = images_per_sample(name, cfg, dataset, peer_cls=peer_cls)
    _seed(args.seed)
    iters = max(1, math.ceil(preset['budget'] / (batch * per_sample)))
    row = dict(method=name,
               implementation=getattr(peer, 'implementation', f'lightly {_lightly_version()}'),
               config=quality.METHODS[name], overrides=quality.OVERRIDES.get(name, {}),
               train_images=len(dataset), batch_size=batch, seed=args.seed,
               images_per_sample=round(per_sample, 3), iterations=iters, samples=iters * batch,
               backbone_images=round(iters * batch * per_sample))
    who = f"[{name} / {row['implementation']}]"  # log prefix: lightly's, or ours in its loop
    if not args.no_check_budget:
        with quiet_mmengine():
            ours = quality.KNOWN_IMAGES_PER_SAMPLE.get(name) or \
                quality.backbone_images_per_sample(cfg)
        row['ours_images_per_sample'] = round(ours, 3)
        if abs(ours - per_sample) > 1e-3:
            peer.notes.append(f'backbone images per sample differ: lightly {per_sample:.3f}, '
                              f'ours {ours:.3f}')
    print(f'{who} {len(dataset)} images, {per_sample:.2f} backbone images per '
          f'sample -> {iters} iterations x {batch}', flush=True)
    if args.dry_run:
        row.update(notes=peer.notes)
        return row

    start = time.time() - build_seconds
    peer.to(device)
    optimizer = peer.optimizer()
    sched = schedule(cfg, iters)
    scheduler = CosineWarmupScheduler(
        optimizer, warmup_epochs=sched['warmup_iters'], max_epochs=iters, start_value=1.0,
        end_value=sched['final_lr_factor'], warmup_start_value=sched['warmup_start_factor'])
    peer.hparams.update(
        schedule=f"CosineWarmupScheduler: linear warm-up from {sched['warmup_start_factor']}x "
                 f"over {sched['warmup_iters']} iterations, cosine to "
                 f"{sched['final_lr_factor']}x at {iters}",
        batch_size=batch, drop_last=bool(cfg.train_dataloader.get('drop_last', False)),
        workers=preset['workers'])
    gen = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, drop_last=peer.hparams['drop_last'],
        num_workers=preset['workers'], persistent_workers=preset['workers'] > 0,
        worker_init_fn=_seed_worker, generator=gen, pin_memory=device.type == 'cuda')

    def batches():
        while True:
            yield from loader

    peer.train()
    log_every = max(1, min(50, iters // 20))
    losses, curve = [], []
    skip = max(1, iters // 10)
    loop_start = None
    stream = batches()
    for it in range(iters):
        if it == skip:
            _sync(device)
            loop_start = time.time()
        views = [v.to(device, non_blocking=True) for v in next(stream)[0]]
        loss = peer.loss(views, it, iters)
        if not torch.isfinite(loss):
            raise FloatingPointError(f'{name} (lightly): loss {loss.item()} at iteration {it}')
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        peer.before_optimizer_step(it)
        lr = optimizer.param_groups[0]['lr']
        optimizer.step()
        scheduler.step()
        peer.after_optimizer_step(it, iters)
        losses.append(float(loss.detach()))
        if it % log_every == 0 or it == iters - 1:
            curve.append([it, round(losses[-1], 4)])
            print(f'{who} iter {it + 1}/{iters} loss {losses[-1]:.4f} lr {lr:.5f} '
                  f"{peer.diagnostics or ''}", flush=True)
    _sync(device)
    loop_end = time.time()
    work = osp.join(args.work_dir, 'lightly')
    os.makedirs(work, exist_ok=True)
    ckpt = osp.join(work, f'{name}_iter_{iters}.pth')
    torch.save(dict(state_dict=peer.backbone_state(),
                    meta=dict(method=name, implementation=row['implementation'],
                              iterations=iters)), ckpt)
    row['train_seconds'] = round(time.time() - start, 1)
    row['images_per_second'] = round(row['samples'] / row['train_seconds'], 1)
    if loop_start is not None and iters > skip:
        row['loop_images_per_second'] = round((iters - skip) * batch / (loop_end - loop_start), 1)
    tail = losses[-min(len(losses), 50):]
    row.update(first_loss=round(losses[0], 4), final_loss=round(sum(tail) / len(tail), 4),
               loss_curve=curve, checkpoint=osp.relpath(ckpt, REPO), hparams=peer.hparams,
               views=[{k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()}
                      for s in specs],
               lightly_transforms=_describe(transform))
    if peer.diagnostics:
        row['diagnostics'] = peer.diagnostics
    del loader, stream
    if not args.skip_eval:
        t0 = time.time()
        with quiet_mmengine():
            # the evaluation protocol is fixed (seed 0: probe subset), whatever the training seed
            row.update(quality.evaluate(cfg, ckpt, preset['probe_train']))
        row['eval_seconds'] = round(time.time() - t0, 1)
    row['notes'] = peer.notes
    print(f"{who} {_short(row)}", flush=True)
    return row


def data_pipeline_ms(name: str, preset: dict, samples: int = 500) -> dict:
    """Milliseconds per training sample of each implementation's data pipeline alone (decode, views,
    augmentation; one process, no loader workers): where the end-to-end images/s differ while
    the training steps do not, the difference is here."""
    from lightly.data import LightlyDataset
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    cfg = method_cfg(name, preset)
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.pop('_scope_', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ours = DATASETS.build(ds_cfg)
    root, files = training_files(cfg)
    theirs = LightlyDataset(root, transform=PEERS[name](cfg).transform()[0], filenames=files)
    out = {}
    for impl, ds in ((OURS, ours), (f'lightly {_lightly_version()}', theirs)):
        _seed(0)
        ds[0]  # warm-up (file cache, lazy imports)
        t0 = time.perf_counter()
        for i in range(samples):
            ds[i % len(ds)]
        out[impl] = round((time.perf_counter() - t0) / samples * 1e3, 3)
    return out


def run_ours(name: str, args, preset: dict) -> dict:
    """Our side: quality.py's run_method (train + evaluate) for the same preset and budget."""
    if args.skip_eval and not args.dry_run:
        raise ValueError('--ours trains and evaluates through quality.run_method; '
                         'drop --skip-eval')
    qargs = argparse.Namespace(dry_run=args.dry_run, only_random=False, seed=args.seed,
                               work_dir=osp.join(args.work_dir, 'ours'))
    row = quality.run_method(name, quality.METHODS[name], qargs, preset)
    row.update(method=name, implementation=OURS)
    curve = _logged_losses(osp.join(qargs.work_dir, name))
    if curve:
        row.update(first_loss=curve[0][1], final_loss=curve[-1][1], loss_curve=curve)
    return row


def _logged_losses(work: str) -> List[list]:
    """[iteration, loss] as mmengine logged them (means over the logging interval), from the
    newest ``vis_data/scalars.json`` under ``work``."""
    import glob
    files = sorted(glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json')))
    if not files:
        return []
    curve = []
    with open(files[-1]) as f:
        for line in f:
            rec = json.loads(line)
            if 'loss' in rec and 'iter' in rec:
                curve.append([rec['iter'], round(float(rec['loss']), 4)])
    return curve


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize()


def _describe(transform) -> List[str]:
    views = getattr(transform, 'transforms', [transform])
    out = []
    for v in views:
        inner = getattr(v, 'transform', v)
        out.append(' '.join(repr(inner).split()))
    return out


def _short(row: dict) -> dict:
    keys = ('iterations', 'train_seconds', 'images_per_second', 'loop_images_per_second',
            'first_loss', 'final_loss', 'k20_top1', 'k200_top1', 'linear_top1', 'diagnostics')
    return {k: row[k] for k in keys if k in row}


def _lightly_version() -> str:
    try:
        from importlib.metadata import version
        return version('lightly')
    except Exception:  # pragma: no cover
        return '?'


# ------------------------------------------------------------------------------- report
def markdown(report: dict) -> str:
    if 'data_pipeline_ms_per_sample' in report:
        lines = [f"## Data pipelines alone: mmssl_ext vs lightly ({report['date']})", '',
                 *rep.provenance(report)[:2],
                 'Milliseconds per training sample (decode, views, augmentation), one process, no '
                 'loader workers, 500 samples of the config\'s training images.', '',
                 '| method | ours (ms / sample) | lightly (ms / sample) | ours / lightly |',
                 '|---|---:|---:|---:|']
        for name, r in report['data_pipeline_ms_per_sample'].items():
            o, t = r[OURS], next(v for k, v in r.items() if k != OURS)
            lines.append(f'| {name} | {o:.2f} | {t:.2f} | {o / t:.2f} |')
        return '\n'.join(lines) + '\n'
    data = ('all 60k' if report['full_train'] else
            'the first 10k; configs/mocov2 (no `indices`): all 60k')
    lines = [f"## Peer comparison: mmssl_ext vs lightly, preset `{report['preset']}` "
             f"({report['date']})", '',
             *rep.provenance(report)[:2],
             f"Budget: {report['budget']:,} backbone-equivalent 32 px images per method and "
             f"implementation; batch 64; the same ResNet-18 (w32) module; training images as "
             f"each method's config ({data}); "
             f"kNN 60k -> 10k, linear probe on {report['probe_train']} training images; "
             f"lightly {report['lightly']}.  images / s: source images per training second "
             '(evaluation excluded); `vs ours`: lightly / ours.  final loss: mean of the last '
             '50 iterations (lightly), the last logged interval mean (ours).', '',
             '| method | implementation | kNN k=20 | kNN k=200 | linear | images / s | vs ours '
             '| iterations x batch | backbone images / sample | final loss | notes |',
             '|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|']
    if report.get('random_init'):
        r = report['random_init']
        lines.append(f"| random init (no training) | - | {r['k20_top1']:.2f} | "
                     f"{r['k200_top1']:.2f} | {r['linear_top1']:.2f} | | | | | | |")
    ours = {r['method']: r for r in report['rows'] if r.get('implementation') == OURS}
    for r in report['rows']:
        name, impl = r['method'], r.get('implementation', '?')
        if 'error' in r:
            lines.append(f"| {name} | {impl} | error: {r['error'].splitlines()[-1][:120]} "
                         '| | | | | | | | |')
            continue
        acc = ' | '.join(f'{r[k]:.2f}' if k in r else '-'
                         for k in ('k20_top1', 'k200_top1', 'linear_top1'))
        ips = r.get('images_per_second', '-')
        vs = '-'
        if impl != OURS and name in ours and ours[name].get('images_per_second') and \
                isinstance(ips, (int, float)):
            vs = f"{ips / ours[name]['images_per_second']:.2f}x"
        short = []
        if r.get('diagnostics'):
            d = r['diagnostics']
            short.append(f"teacher entropy {d['teacher_entropy']}, batch-mean entropy "
                         f"{d['teacher_batch_mean_entropy']} (/ log K)")
        if r.get('notes'):
            short.append(f"{len(r['notes'])} differences, below")
        lines.append(f"| {name} | {impl} | {acc} | {ips} | {vs} | "
                     f"{r.get('iterations', '-')} x {r.get('batch_size', '-')} | "
                     f"{r.get('images_per_sample', '-')} | {r.get('final_loss', '-')} | "
                     f"{'; '.join(short)} |")
    lightly_rows = [r for r in report['rows'] if r.get('implementation') != OURS]
    if any(r.get('hparams') for r in lightly_rows):
        lines += ['', '### lightly side: hyper-parameters (read from our configs)', '']
        for r in lightly_rows:
            if r.get('hparams'):
                hp = '; '.join(f'{k}: {v}' for k, v in r['hparams'].items())
                lines.append(f"- **{r['method']}** ({r['config']}): {hp}")
    if any(r.get('notes') for r in lightly_rows):
        lines += ['', '### What differs between the implementations', '',
                  'Common to all: torch loop vs mmengine Runner; torchvision vs mmcv / mmpretrain '
                  'transforms (same parameters); schedule steps offset by one in the warm-up. '
                  'Per method:', '']
        for r in lightly_rows:
            for n in r.get('notes', []):
                lines.append(f"- {r['method']}: {n}")
    return '\n'.join(lines) + '\n'


def _write(report: dict, args) -> None:
    rep.write(report, markdown(report), 'peers', args.tag, args.out)


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--preset', choices=sorted(quality.PRESETS), default='cpu',
                   help="quality.py's preset: data (10k / 60k), probe size, threads, workers")
    p.add_argument('--methods', nargs='+', choices=list(PEER_METHODS) + ['all'],
                   default=list(PEER_METHODS))
    p.add_argument('--budget', type=int, help="backbone-equivalent images (default: preset's)")
    p.add_argument('--ours', action='store_true',
                   help='also train + evaluate our implementation (quality.run_method)')
    p.add_argument('--random-init', action='store_true',
                   help='also evaluate the untrained backbone (a reference row)')
    p.add_argument('--skip-eval', action='store_true', help='train only (smoke test)')
    p.add_argument('--data-only', action='store_true',
                   help='no training: ms per sample of each data pipeline alone, one process')
    p.add_argument('--dry-run', action='store_true', help='only measure and print iterations')
    p.add_argument('--no-check-budget', action='store_true',
                   help="skip measuring our model's backbone images per sample")
    p.add_argument('--threads', type=int, help="torch threads (default: the preset's)")
    p.add_argument('--workers', type=int, help="data loader workers (default: the preset's)")
    p.add_argument('--seed', type=int, default=0,
                   help='training seed of both implementations (the evaluation always uses 0)')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'benchmarks', 'peers'))
    p.add_argument('--out', default=rep.RESULTS)
    p.add_argument('--tag', help='results file name peers_<tag> (default: <preset>-<budget>)')
    args = p.parse_args(argv)
    preset = dict(quality.PRESETS[args.preset])
    if args.budget:
        preset['budget'] = args.budget
    for key in ('threads', 'workers'):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    args.tag = args.tag or f"{args.preset}-{preset['budget'] // 1000}k"
    methods = list(PEER_METHODS) if 'all' in args.methods else args.methods
    torch.set_num_threads(preset['threads'])
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    import mmssl_ext  # noqa: F401
    report = rep.new_report(preset=args.preset, budget=preset['budget'],
                            full_train=preset['full_train'], probe_train=preset['probe_train'],
                            threads=preset['threads'], workers=preset['workers'],
                            lightly=_lightly_version(),
                            machine=rep.machine(preset['threads'], device.type), rows=[])
    if argv is not None:
        report['command'] = 'python benchmarks/peers.py ' + ' '.join(argv)
    if args.data_only:
        report['data_pipeline_ms_per_sample'] = {
            name: data_pipeline_ms(name, preset) for name in methods}
        print(json.dumps(report['data_pipeline_ms_per_sample'], indent=1))
        _write(report, args)
        return report
    if args.random_init and not args.dry_run:
        with quiet_mmengine():
            report['random_init'] = quality.evaluate(method_cfg('pirl', preset), 'random',
                                                     preset['probe_train'])
    for name in methods:
        runs = ([('ours', lambda: run_ours(name, args, preset))] if args.ours else []) + \
            [('lightly', lambda: run_lightly(name, args, preset, device))]
        for impl, fn in runs:
            try:
                row = fn()
            except Exception:  # one method's failure must not lose the others' results
                tb = traceback.format_exc()
                print(tb, flush=True)
                row = dict(method=name, config=quality.METHODS[name],
                           implementation=OURS if impl == 'ours' else
                           f'lightly {_lightly_version()}', error=tb)
            report['rows'].append(row)
            if not args.dry_run:
                _write(report, args)
    if not args.dry_run:
        _write(report, args)
        print(markdown(report))
    return report


if __name__ == '__main__':
    main()
