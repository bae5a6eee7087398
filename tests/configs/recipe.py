"""Helpers of the config-pinning tests (``tests/configs/test_recipe_<method>.py``).

A pinning test loads an ImageNet config and compares what it resolves to against the values of
the reference implementation, written as literals in the test next to the reference file they
come from.  These helpers only read a config; they never supply an expected value.
"""
import copy
import os.path as osp
import re
from typing import List, Optional, Tuple

import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

from mmssl_ext.utils.config import load_config
from tests.helpers import REPO


def load(rel_path: str) -> Config:
    """The resolved config ``configs/<rel_path>`` (bases merged, variables substituted)."""
    return load_config(osp.join(REPO, 'configs', rel_path))


def plain(value):
    """``value`` with ConfigDicts as dicts, tuples as lists and mmengine's ``_scope_`` dropped."""
    if isinstance(value, (dict, ConfigDict)):
        return {k: plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def name_gpus_batch(rel_path: str) -> Tuple[int, int]:
    """``(gpus, per-GPU batch)`` as the config's name states them (``..._8xb32-...``)."""
    match = re.search(r'_(\d+)xb(\d+)', osp.basename(rel_path))
    assert match, f'{rel_path}: no "<gpus>xb<batch>" in the name'
    return int(match.group(1)), int(match.group(2))


def total_batch(cfg: Config, gpus: int) -> int:
    """The global batch: the train dataloader's per-GPU batch times ``gpus``."""
    return cfg.train_dataloader.batch_size * gpus


def optimizer(cfg: Config) -> dict:
    """The optimizer section of ``optim_wrapper`` as a plain dict."""
    return plain(cfg.optim_wrapper.optimizer)


def schedulers(cfg: Config) -> List[dict]:
    """``param_scheduler`` as a list of plain dicts (a single scheduler becomes a list of one)."""
    sched = cfg.param_scheduler
    return plain(sched if isinstance(sched, (list, tuple)) else [sched])


def effective_weight_decay(cfg: Config) -> dict:
    """The weight decay mmengine's optimizer constructor gives each kind of parameter.

    The config's ``optim_wrapper`` (``paramwise_cfg`` included) is built over a tiny
    conv -> BatchNorm -> linear model, so the result shows what training would apply, not only
    what the config says: keys ``conv_weight``, ``norm_weight``, ``norm_bias``,
    ``linear_weight``, ``linear_bias``.
    """
    from mmengine.optim import build_optim_wrapper
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Linear(4, 2))
    names = {'0.weight': 'conv_weight', '1.weight': 'norm_weight', '1.bias': 'norm_bias',
             '2.weight': 'linear_weight', '2.bias': 'linear_bias'}
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    wrapper_cfg['type'] = 'OptimWrapper'  # AMP wrappers need a GPU; the groups are the same
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, wrapper_cfg)
    by_param = {id(p): n for n, p in model.named_parameters()}
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            decay[names[by_param[id(param)]]] = group['weight_decay']
    return decay


def find_transforms(pipeline, type_name: str) -> List[dict]:
    """Every transform dict of type ``type_name`` in ``pipeline``, nested ones included
    (``RandomApply(transforms=...)``, ``PIRLViews(image_pipeline=...)``, ...), in order."""
    found = []

    def walk(node):
        if isinstance(node, (dict, ConfigDict)):
            if node.get('type') == type_name:
                found.append(plain(node))
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(pipeline)
    return found


def find_transform(pipeline, type_name: str) -> dict:
    """The one transform dict of type ``type_name`` in ``pipeline`` (nested ones included)."""
    found = find_transforms(pipeline, type_name)
    assert len(found) == 1, f'expected one {type_name} in the pipeline, found {len(found)}'
    return found[0]


def transform_types(pipeline) -> List[str]:
    """The ``type`` of each top-level transform of ``pipeline``, in order."""
    return [t['type'] for t in pipeline]


def assert_values(actual, expected: dict, where: Optional[str] = None) -> None:
    """Each key of ``expected`` has its value in ``actual``; all differences in one message.

    Numbers compare with a relative tolerance of 1e-9 (``0.12 * 256 / 1024`` equals 0.03).
    """
    actual = plain(actual)
    wrong = []
    for key, want in expected.items():
        have = actual.get(key, '<missing>')
        if not _same(have, plain(want)):
            wrong.append(f'{key}: config has {have!r}, reference {want!r}')
    assert not wrong, f'{where or "config"} differs from the reference:\n  ' + '\n  '.join(wrong)


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-30)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def build_transform(transform_cfg: dict):
    """The transform built from ``transform_cfg`` (mmpretrain's registry), to read the values a
    config leaves to the transform's defaults (e.g. ``RandomResizedCrop.crop_ratio_range``)."""
    import mmssl_ext  # noqa: F401  (registers our transforms)
    from mmssl_ext.registry import TRANSFORMS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return TRANSFORMS.build(copy.deepcopy(transform_cfg))


def build_loss(loss_cfg: dict):
    """The loss module built from ``loss_cfg`` (mmpretrain's registry), to read its defaults."""
    import mmssl_ext  # noqa: F401  (registers our losses)
    from mmssl_ext.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(copy.deepcopy(loss_cfg))
