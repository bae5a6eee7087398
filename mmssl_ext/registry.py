"""The one place that names the registries mmssl_ext registers into.

mmssl_ext does not create registries of its own: every component lands in mmpretrain's, so a
config with ``default_scope = 'mmpretrain'`` and ``custom_imports=dict(imports=['mmssl_ext'])``
resolves our types next to mmpretrain's.  mmdet's registries are children of mmengine's root
registries as well, so a backbone checkpoint of ours flows into mmdet through ``init_cfg``.

One exception, for detection transfer: ``PretrainedCheckHook`` registers into mmengine's root
``HOOKS`` (``ROOT_HOOKS``), so that mmpretrain- and mmdet-scoped configs both find it.
"""
from mmengine.registry import HOOKS as ROOT_HOOKS
from mmpretrain.registry import (DATA_SAMPLERS, DATASETS, EVALUATORS, HOOKS,
                                 LOOPS, METRICS, MODEL_WRAPPERS, MODELS,
                                 OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, TRANSFORMS,
                                 VISUALIZERS)

__all__ = [
    'DATA_SAMPLERS', 'DATASETS', 'EVALUATORS', 'HOOKS', 'LOOPS', 'METRICS',
    'MODEL_WRAPPERS', 'ROOT_HOOKS', 'MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS',
    'TRANSFORMS', 'VISUALIZERS'
]
