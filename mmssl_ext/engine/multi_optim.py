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
"""
import copy
from collections import OrderedDict
from typing import Optional

import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict

from mmssl_ext.registry import OPTIM_WRAPPER_CONSTRUCTORS


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
        if 'type' in cfg or 'optimizer' in cfg:
            key = 'type' if 'type' in cfg else 'optimizer'
            raise ValueError(f'MultiOptimWrapperConstructor: optim_wrapper.{key}={cfg[key]!r} '
                             f'is for one optimiser; each entry has its own (e.g. '
                             f'optim_wrapper.generator.{key}); tools/train.py --amp sets only '
                             f'optim_wrapper.type: set each entry\'s type instead')
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
