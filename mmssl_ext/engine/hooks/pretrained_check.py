"""``PretrainedCheckHook``: a transfer benchmark must not quietly start from random weights.

mmengine's ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` loads with
``strict=False``: a checkpoint whose keys do not fit (wrong prefix, another depth / width / stem,
a classifier checkpoint in a detector) only logs a warning, and the benchmark then measures a
randomly initialised network.  Our benchmark configs keep the standard ``Pretrained`` initializer
(so its special handling in mmengine, mmpretrain and mmdet stays intact) and add this hook, which

* ``before_run`` (before the Runner initialises the weights): every ``Pretrained`` init_cfg in the
  model names an existing file; the error says which config key to set;
* ``before_train`` (after the weights are initialised): for every module with a ``Pretrained``
  init_cfg, the module's weights and the file's (under ``prefix``) have the same keys and shapes,
  and hold the same values (so nothing re-initialised them after loading).  Expected gaps are
  declared per module with regular expressions, e.g. a C4 detector's backbone stops after res4::

      dict(type='PretrainedCheckHook',
           allow_unexpected={'backbone': [r'layer4\\.']},
           allow_missing={'roi_head.shared_head': [r'norm\\.']})

The value check is skipped when the run resumes or loads ``load_from`` (the weights then come
from that file).  The hook is registered in mmengine's root ``HOOKS``, so mmpretrain and mmdet
configs find it.
"""
import os.path as osp
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmssl_ext.registry import ROOT_HOOKS as HOOKS

# PretrainedKeysError and load_state lived here before utils.checkpoint: kept importable
from mmssl_ext.utils.checkpoint import (PretrainedKeysError, check_keys,  # noqa: F401
                                        load_checkpoint_safe, load_state)


def pretrained_cfgs(model: torch.nn.Module) -> List[Tuple[str, torch.nn.Module, dict]]:
    """``(module name, module, init_cfg)`` for every ``type='Pretrained'`` init_cfg in ``model``."""
    out = []
    for name, module in model.named_modules():
        cfgs = getattr(module, 'init_cfg', None)
        if cfgs is None:
            continue
        for cfg in (cfgs if isinstance(cfgs, (list, tuple)) else [cfgs]):
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
                out.append((name, module, cfg))
    return out


def _examples(keys: List[str], n: int = 4) -> str:
    more = f' and {len(keys) - n} more' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def format_report(report: Dict[str, List[str]]) -> str:
    parts = []
    if report.get('missing'):
        parts.append(f'{len(report["missing"])} weights of the model are not in the file '
                     f'({_examples(report["missing"])})')
    if report.get('unexpected'):
        parts.append(f'{len(report["unexpected"])} weights of the file have no place in the '
                     f'model ({_examples(report["unexpected"])})')
    if report.get('mismatched'):
        parts.append(f'{len(report["mismatched"])} have another shape '
                     f'({_examples(report["mismatched"], 2)})')
    if report.get('differ'):
        parts.append(f'{len(report["differ"])} hold other values than the file after '
                     f'initialisation, i.e. were overwritten after loading '
                     f'({_examples(report["differ"])})')
    return '; '.join(parts)


@HOOKS.register_module()
class PretrainedCheckHook(Hook):
    """Fail before the first iteration when ``Pretrained`` weights did not load completely.

    Args:
        allow_missing (dict[str, list[str]]): per module name (``'backbone'``,
            ``'roi_head.shared_head'``), regexes of the module's keys that the file may lack.
        allow_unexpected (dict[str, list[str]]): per module name, regexes of file keys the
            module may ignore.
        require (bool): also fail when the model has no ``Pretrained`` init_cfg at all.
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_missing: Optional[Dict[str, Iterable[str]]] = None,
                 allow_unexpected: Optional[Dict[str, Iterable[str]]] = None,
                 require: bool = False):
        self.allow_missing = {k: list(v) for k, v in (allow_missing or {}).items()}
        self.allow_unexpected = {k: list(v) for k, v in (allow_unexpected or {}).items()}
        self.require = require

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner) -> None:
        found = pretrained_cfgs(self._model(runner))
        if self.require and not found:
            raise PretrainedKeysError(
                'PretrainedCheckHook(require=True): the model has no '
                "init_cfg=dict(type='Pretrained', ...); this benchmark would measure a randomly "
                'initialised network')
        for name, _, cfg in found:
            ckpt = cfg.get('checkpoint')
            if not ckpt or ('://' not in str(ckpt) and not osp.isfile(str(ckpt))):
                key = f'model.{name}.init_cfg.checkpoint' if name else 'model.init_cfg.checkpoint'
                raise FileNotFoundError(
                    f'pretrained checkpoint {ckpt!r} of {name or "the model"} not found; pass '
                    f'one with --cfg-options {key}=PATH (a training checkpoint of ours with '
                    f"prefix='backbone.', or a tools/extract_backbone.py file with "
                    f'{key[:-len("checkpoint")]}prefix=None)')

    def before_train(self, runner) -> None:
        check_values = not (getattr(runner, '_resume', False) or
                            getattr(runner, '_load_from', None))
        for name, module, cfg in pretrained_cfgs(self._model(runner)):
            ckpt, prefix = str(cfg['checkpoint']), cfg.get('prefix')
            report = check_keys(module.state_dict(), load_state(ckpt, prefix),
                                self.allow_missing.get(name, ()),
                                self.allow_unexpected.get(name, ()), check_values)
            if any(report.values()):
                raise PretrainedKeysError(
                    f'{ckpt} (prefix {prefix!r}) does not fit {name or "the model"} '
                    f'({type(module).__name__}): {format_report(report)}. Wrong checkpoint, '
                    f'prefix or architecture (depth / width / stem)?')
            print_log(f'PretrainedCheckHook: {name or "model"} holds all '
                      f'{len(module.state_dict())} tensors of {ckpt}', logger='current')
