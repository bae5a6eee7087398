"""What every peer shares: the method's config as ``benchmarks.quality`` runs it, the training
images, the schedule, the backbone (our mmpretrain module, pooled), lightly view arguments read
from a config's views, and :class:`Peer`, the base of the lightly models."""
import contextlib
import copy
import os.path as osp
from typing import Dict, Iterator, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks import quality
from benchmarks.report import REPO

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
def view_spec(view: list) -> dict:
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


def min_scale(spec: dict) -> float:
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
        out += [view_spec(view)] * n
    return out


def view_args(spec: dict, normalize: bool = True) -> dict:
    """lightly view-transform arguments shared by its SimCLR / MoCo / BYOL / DINO views;
    ``normalize=False``: views in [0, 1], not normalised (lightly's default normalises)."""
    kw = dict(cj_prob=spec['cj_prob'], cj_strength=1.0, cj_bright=spec['cj_bright'],
              cj_contrast=spec['cj_contrast'], cj_sat=spec['cj_sat'], cj_hue=spec['cj_hue'],
              random_gray_scale=spec['random_gray_scale'], gaussian_blur=spec['gaussian_blur'],
              hf_prob=spec['hf_prob'])
    if not normalize:
        kw['normalize'] = None
    return kw


def rrc_interpolation(view) -> Optional[str]:
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


def interp_notes(specs: List[dict], views) -> List[str]:
    notes = []
    for i, (spec, view) in enumerate(zip(specs, views)):
        got = rrc_interpolation(view)
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

    def same_two_views(self, transform_cls, method: str):
        """lightly's ``transform_cls`` for a config with two identical views (SimCLR, MoCo v2);
        returns ``(transform, view specs)`` and notes interpolation differences."""
        specs = config_views(self.cfg)
        if len(specs) != 2 or specs[0] != specs[1]:
            raise ValueError(f'{method}: expected two identical views')
        s = specs[0]
        t = transform_cls(input_size=s['size'], min_scale=min_scale(s),
                          **view_args(s, self.normalize_views))
        self.notes += interp_notes(specs, t.transforms)
        return t, specs

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
