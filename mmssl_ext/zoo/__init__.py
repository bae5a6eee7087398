"""Published self-supervised weights of other frameworks, converted to mmpretrain backbones.

Key decision (shared by the converters, the loader schemes and the model index): every
converter and every scheme (``vissl://``, ``dino://``, ``mmselfsup://``) returns a checkpoint
``dict(state_dict=..., meta=...)`` whose keys are the mmpretrain backbone's WITH the
``backbone.`` prefix, i.e. laid out like a full mmpretrain classifier / selfsup model without
its heads. So:

* backbone ``init_cfg``: ``dict(type='Pretrained', checkpoint='vissl://FILE',
  prefix='backbone.')`` (as our benchmark configs already do for our own checkpoints);
* a whole model (``mmpretrain.get_model(NAME, pretrained='dino://FILE')``, ``load_from``):
  no prefix; the head stays as initialised.

Layer: bottom (as ``utils``); imports only ``mmssl_ext.utils`` and ``mmssl_ext.registry``.
"""
from typing import Optional

from mmengine.runner import CheckpointLoader

from .common import ZooFormatError, load_source, split_scheme
from .dino import EXTRA_SAFE as _DINO_SAFE
from .dino import convert_dino
from .mmselfsup import convert_mmselfsup
from .vissl import convert_vissl

__all__ = ['ZooFormatError', 'convert_vissl', 'convert_dino', 'convert_mmselfsup',
           'register_schemes', 'SCHEMES']


def load_from_vissl(filename: str, map_location: Optional[str] = None) -> dict:
    """``vissl://PATH_OR_URL``: a VISSL ResNet trunk as ``{'state_dict': {'backbone.*'}}``."""
    _, path = split_scheme(filename, 'vissl://')
    state, meta = convert_vissl(load_source(path), source=path)
    return dict(state_dict=state, meta=meta)


def load_from_dino(filename: str, map_location: Optional[str] = None) -> dict:
    """``dino://[teacher/|student/]PATH_OR_URL``: an official DINO backbone (the teacher of a
    training checkpoint unless ``student/`` is given)."""
    network, path = split_scheme(filename, 'dino://', ('teacher', 'student'))
    state, meta = convert_dino(load_source(path, extra_safe=_DINO_SAFE), network, source=path)
    return dict(state_dict=state, meta=meta)


def load_from_mmselfsup(filename: str, map_location: Optional[str] = None) -> dict:
    """``mmselfsup://[sobel/]PATH_OR_URL``: an mmselfsup / OpenSelfSup backbone (``sobel/``
    accepts DeepCluster's 2-channel Sobel stem)."""
    option, path = split_scheme(filename, 'mmselfsup://', ('sobel', ))
    state, meta = convert_mmselfsup(load_source(path), sobel=option == 'sobel', source=path)
    return dict(state_dict=state, meta=meta)


#: scheme -> loader (named load_from_* as mmengine's, whose log prints the name's tail),
#: registered with mmengine's CheckpointLoader on ``import mmssl_ext``
SCHEMES = {'vissl://': load_from_vissl, 'dino://': load_from_dino,
           'mmselfsup://': load_from_mmselfsup}


def register_schemes() -> None:
    """Register :data:`SCHEMES` (idempotent)."""
    for prefix, loader in SCHEMES.items():
        CheckpointLoader.register_scheme(prefix, loader, force=True)


register_schemes()
