"""mmssl_ext's OpenMMLab model index in mmpretrain's ``ModelHub``.

``import mmssl_ext`` calls :func:`register_model_index`, after which ``mmpretrain.list_models``,
``get_model``, ``inference_model`` and ``FeatureExtractor`` know our model names (the
``configs/*/metafile.yml`` entries imported by ``model-index.yml``), e.g.::

    import mmssl_ext  # noqa: F401
    from mmpretrain import get_model, list_models
    list_models('*pirl*')
    model = get_model('pirl_resnet50_32xb32-200e_in1k-vissl', pretrained=True)  # vissl:// URL
    model = get_model('pirl_resnet18-w32_1xb64-3000it_fmnist', pretrained='work_dirs/x.pth')

The index is parsed lazily, together with mmpretrain's own (``ModelHub`` parses it on the first
``list_models`` / ``get_model``): we wrap ``ModelHub._register_mmpretrain_models``, mmpretrain
1.2's internal hook, so that importing mmssl_ext reads no YAML; ``ModelHub.get`` is wrapped to
drop a ``test_dataloader = None`` that ``get_model`` cannot read.  The index and the configs are
taken from the installed package's ``.mim/`` (made by ``setup.py``), else from the repository
the package sits in (a source checkout on ``PYTHONPATH``).
"""
import os.path as osp
import warnings
from typing import Optional, Tuple

from mmpretrain.apis import ModelHub

PKG_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
_MARK = '_mmssl_ext_model_index'


def model_index_location() -> Tuple[Optional[str], Optional[str]]:
    """``(model-index.yml, root its Config paths are relative to)``, or ``(None, None)``."""
    for root in (osp.join(PKG_DIR, '.mim'), osp.dirname(PKG_DIR)):
        path = osp.join(root, 'model-index.yml')
        if osp.isfile(path) and osp.isdir(osp.join(root, 'configs')):
            return path, root
    return None, None


def _register_ours(hub) -> None:
    if getattr(hub, _MARK, False):
        return
    setattr(hub, _MARK, True)
    path, root = model_index_location()
    if path is None:
        return
    try:
        hub.register_model_index(path, config_prefix=root)
    except ValueError as e:
        # a name mmpretrain already uses (tests/zoo/test_model_index.py keeps ours distinct):
        # mmpretrain's own models must stay usable, so this warns instead of failing their lookup
        warnings.warn(f'mmssl_ext model index not fully registered: {e}')


def register_model_index() -> None:
    """Make ``ModelHub`` register our model index right after mmpretrain's (idempotent)."""
    current = ModelHub._register_mmpretrain_models
    if getattr(current, _MARK, False):
        return
    register_original = current.__func__
    get_original = ModelHub.get.__func__

    def _register_mmpretrain_and_mmssl_ext(cls):
        register_original(cls)
        _register_ours(cls)

    def _get(cls, model_name):
        metainfo = get_original(cls, model_name)
        # a config without a test loop says ``test_dataloader = None`` (our ClusterFit ones);
        # get_model reads a present key as a loader and fails on None
        if metainfo.config.get('test_dataloader', False) is None:
            metainfo.config.pop('test_dataloader')
        return metainfo

    for fn in (_register_mmpretrain_and_mmssl_ext, _get):
        setattr(fn, _MARK, True)
    ModelHub._register_mmpretrain_models = classmethod(_register_mmpretrain_and_mmssl_ext)
    ModelHub.get = classmethod(_get)
