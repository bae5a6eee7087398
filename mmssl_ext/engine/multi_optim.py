"""One optimiser per network for models trained with several (GANs): mmengine's
``OptimWrapperDict`` built from a config.

mmengine's Runner builds ``optim_wrapper=dict(constructor=..., ...)`` through the named
constructor, and an ``OptimWrapperDict`` gets one parameter-scheduler list per key
(``param_scheduler=dict(<key>=[...], ...)``); checkpoints then hold every optimiser's and every
schedule's state.  mmengine ships no constructor for the dict (mmagic has one, per sub-module);
this one also lets one optimiser own several sub-modules (BigBiGAN's encoder and generator)::

    optim_wrapper = dict(
        constructor='MultiOptimWrapperConstructor',
        generator=dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.5, 0.999)),
                       modules=['generator', 'backbone', 'neck']),
        discriminator=dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.5, 0.999))))

Each entry is an ordinary optimiser-wrapper config (``type`` defaults to ``OptimWrapper``,
``paramwise_cfg`` allowed) plus ``modules``: the model's sub-modules (attribute names) it owns,
by default ``[<key>]``.  Every trainable parameter must belong to exactly one entry.
Wrapper settings at the top level (``type``, ``dtype``, ``loss_scale``, ``clip_grad``,
``accumulative_counts``) apply to every entry, so ``tools/train.py --amp`` (which sets
``optim_wrapper.type`` / ``dtype``) puts every optimiser under AMP; an entry that sets one of
them to another value is an error.
"""
import copy
from collections import OrderedDict
from typing import Optional

import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict

from mmssl_ext.registry import OPTIM_WRAPPER_CONSTRUCTORS

#: wrapper settings that may stand at the top level, for every entry
SHARED_KEYS = ('type', 'dtype', 'loss_scale', 'clip_grad', 'accumulative_counts')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MultiOptimWrapperConstructor:
    """``optim_wrapper`` entries -> an ``OptimWrapperDict`` (see the module docstring).

    Raises:
        ValueError / KeyError: an entry that is not a dict, a sub-module the model lacks or that
            two entries claim, or trainable parameters no entry owns (each message names the
            key, the value and the fix).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        if paramwise_cfg is not None:
            raise ValueError('MultiOptimWrapperConstructor: optim_wrapper.paramwise_cfg applies '
                             'to one optimiser; put it inside the entry it is for, e.g. '
                             'optim_wrapper.generator.paramwise_cfg')
        cfg = dict(optim_wrapper_cfg)
        if 'optimizer' in cfg:
            raise ValueError(f'MultiOptimWrapperConstructor: optim_wrapper.optimizer='
                             f'{cfg["optimizer"]!r} is for one optimiser; give each entry its '
                             f'own (e.g. optim_wrapper.generator.optimizer)')
        self.shared = {k: cfg.pop(k) for k in SHARED_KEYS if k in cfg}
        bad = [k for k, v in cfg.items() if not isinstance(v, dict)]
        if not cfg or bad:
            raise ValueError(f'MultiOptimWrapperConstructor: optim_wrapper needs one dict per '
                             f'optimiser (name=dict(optimizer=..., modules=[...])); '
                             f'{bad or "none"} given as {[cfg[k] for k in bad] or cfg}')
        self.cfgs = copy.deepcopy(cfg)

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        module = model.module if is_model_wrapper(model) else model
        children = dict(module.named_children())
        owner = {}
        wrappers = OrderedDict()
        for name, cfg in self.cfgs.items():
            cfg = copy.deepcopy(cfg)
            modules = list(cfg.pop('modules', [name]))
            paramwise = cfg.pop('paramwise_cfg', None)
            for key, value in self.shared.items():
                if key in cfg and cfg[key] != value:
                    raise ValueError(f'optim_wrapper.{key}={value!r} applies to every optimiser '
                                     f'but optim_wrapper.{name}.{key}={cfg[key]!r}; remove one')
                cfg[key] = copy.deepcopy(value)
            missing = [m for m in modules if m not in children]
            if not modules or missing:
                raise KeyError(f'optim_wrapper.{name}.modules={modules}: '
                               f'{type(module).__name__} has no sub-module {missing}; its '
                               f'sub-modules are {sorted(children)}')
            for m in modules:
                if m in owner:
                    raise ValueError(f'optim_wrapper: sub-module {m!r} is in both '
                                     f'optim_wrapper.{owner[m]}.modules and optim_wrapper.'
                                     f'{name}.modules; each network has one optimiser')
                owner[m] = name
            cfg.setdefault('type', 'OptimWrapper')
            target = children[modules[0]] if len(modules) == 1 else \
                nn.ModuleDict({m: children[m] for m in modules})
            wrappers[name] = DefaultOptimWrapperConstructor(cfg, paramwise)(target)
        owned = {id(p) for m in owner for p in children[m].parameters()}
        stray = sorted({n.split('.')[0] for n, p in module.named_parameters()
                        if p.requires_grad and id(p) not in owned})
        if stray:
            raise ValueError(f'optim_wrapper: the trainable parameters of {stray} have no '
                             f'optimiser; add them to the modules list of one of '
                             f'{sorted(self.cfgs)} (optim_wrapper.<name>.modules)')
        return OptimWrapperDict(**wrappers)
