"""Config helpers shared by the tools, hooks and benchmarks: loading (``pkg::`` too), building
a config's dataloader or model, and naming a registered type."""
import copy
from typing import Any

from mmengine.config import Config


def load_config(path: str) -> Config:
    """``Config.fromfile`` that also takes package configs, e.g. ``mmpretrain::mocov2/x.py``.

    mmengine resolves ``pkg::`` only inside ``_base_``; the tools accept it on the command line
    too, so ``tools/train.py mmpretrain::simclr/...`` runs mmpretrain's own recipe unchanged.
    """
    if '::' in path:
        from mmengine.hub import get_config
        return get_config(path)
    return Config.fromfile(path)


def strip_collate_scope(loader_cfg) -> None:
    """Drop the ``_scope_`` mmengine adds to ``collate_fn`` dicts that come from a package base.

    Configs that inherit ``mmpretrain::`` / ``mmdet::`` bases get ``_scope_`` on every dict with a
    ``type`` key.  Registries accept it, but ``Runner.build_dataloader`` builds ``collate_fn`` with
    ``functools.partial(fn, **cfg)``, so ``default_collate`` would receive ``_scope_`` and fail.
    """
    if loader_cfg is None or not hasattr(loader_cfg, 'get'):
        return
    collate = loader_cfg.get('collate_fn', None)
    if isinstance(collate, dict):
        collate.pop('_scope_', None)


def build_dataloader(loader_cfg, seed=None):
    """``Runner.build_dataloader`` for configs that may come from package bases."""
    from mmengine.runner import Runner
    if isinstance(loader_cfg, dict):
        loader_cfg = copy.deepcopy(loader_cfg)
        strip_collate_scope(loader_cfg)
    return Runner.build_dataloader(loader_cfg, seed=seed)


def build_model(cfg: Config, seed: int = 0):
    """Build ``cfg.model`` with its default (random) initialisation, seeded."""
    from mmengine.registry import DefaultScope
    from mmengine.runner.utils import set_random_seed

    from mmssl_ext.registry import MODELS
    scope = cfg.get('default_scope', 'mmpretrain')
    if not DefaultScope.check_instance_created('mmssl_knn_eval'):
        DefaultScope.get_instance('mmssl_knn_eval', scope_name=scope)
    set_random_seed(seed)
    model_cfg = copy.deepcopy(cfg.model)
    # as mmengine's Runner does: a top-level data_preprocessor (mmpretrain's dataset bases put
    # it there) applies when the model does not set its own
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    if hasattr(model, 'init_weights'):
        model.init_weights()
    return model


def type_name(t: Any) -> str:
    """The class name a config's ``type`` refers to: a class, ``'Name'`` or ``'scope.Name'``."""
    return t.__name__ if isinstance(t, type) else str(t).rsplit('.', 1)[-1]
