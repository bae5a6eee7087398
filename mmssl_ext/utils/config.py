"""Config loading shared by the tools."""
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
    import copy

    from mmengine.runner import Runner
    if isinstance(loader_cfg, dict):
        loader_cfg = copy.deepcopy(loader_cfg)
        strip_collate_scope(loader_cfg)
    return Runner.build_dataloader(loader_cfg, seed=seed)
