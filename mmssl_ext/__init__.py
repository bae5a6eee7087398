"""mmssl_ext: self-supervised visual representation learning for the OpenMMLab stack.

``import mmssl_ext`` (or ``custom_imports=dict(imports=['mmssl_ext'])`` in a config) registers every
component into mmpretrain's registries and allow-lists the types of mmengine checkpoints for
torch's weights-only loader (so ``--resume`` works on torch >= 2.6 with safe loading on).
"""
from .utils.checkpoint import register_safe_globals
from .version import __version__

register_safe_globals()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registration side effects)
from .zoo.model_index import register_model_index  # noqa: E402

register_model_index()  # our model names in mmpretrain's ModelHub (list_models, get_model)

__all__ = ['__version__']
