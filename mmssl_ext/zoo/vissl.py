"""VISSL checkpoints -> mmpretrain ``ResNet`` (keys with ``backbone.``).

VISSL's ResNe(X)t trunk wraps torchvision's ResNet in ``_feature_blocks`` (an ``nn.ModuleDict``
with ``conv1``, ``bn1``, ``layer1``..``layer4``), so its keys are torchvision's (which are
mmpretrain ``ResNet``'s) under ``_feature_blocks.``. The layouts accepted are those of VISSL's
``extra_scripts/convert_vissl_to_torchvision.py`` and ``vissl/utils/checkpoint.py``
(:data:`LAYOUTS`). ``RESNETS.WIDTH_MULTIPLIER`` w (the wide SwAV / SimCLR ResNet-50 w2, w4, w5)
becomes ``stem_channels=base_channels=64 * w``; ResNeXt (``GROUPS > 1``), RegNet and AlexNet
trunks are refused. Heads are dropped unless asked for; kept, they stay under ``heads.`` with
VISSL's keys (no mmpretrain head has their layout).
"""
from collections import OrderedDict
from typing import Any, Dict, Tuple

from .common import check_backbone, layout_error, resnet_cfg, tensors

LAYOUTS = (
    "classy_state_dict['base_model']['model']['trunk'] (and ['heads']): VISSL training and "
    'model-zoo checkpoints (model_final_checkpoint_phase*.torch)',
    "model_state_dict: a dict under 'model_state_dict' holding the trunk (older VISSL files)",
    'a bare trunk state dict keyed _feature_blocks.*, base_model._feature_blocks.* (feature '
    'evaluation trunks) or trunk._feature_blocks.* / heads.* (VISSL PARAMS_FILE layout)',
    'a torchvision-keyed ResNet state dict (conv1.*, layer1.*: what VISSL\'s '
    'convert_vissl_to_torchvision.py writes)',
)

_TRUNK_PREFIXES = ('trunk.base_model._feature_blocks.', 'trunk._feature_blocks.',
                   'base_model._feature_blocks.', '_feature_blocks.')
#: torchvision's ResNet keys (convert_vissl_to_torchvision.py's output): no prefix
_TORCHVISION_KEY = 'conv1.weight'


def _trunk_and_heads(ckpt: Any) -> Tuple[Dict[str, Any], Dict[str, Any], str]:
    """(trunk, heads, layout name) of a loaded VISSL file, or KeyError when none fits."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get('classy_state_dict'), dict):
        model = ckpt['classy_state_dict']['base_model']['model']
        return model['trunk'], model.get('heads', {}), 'classy_state_dict'
    if isinstance(ckpt, dict) and isinstance(ckpt.get('model_state_dict'), dict):
        return ckpt['model_state_dict'], {}, 'model_state_dict'
    if isinstance(ckpt, dict):
        heads = OrderedDict((k[len('heads.'):], v) for k, v in ckpt.items()
                            if k.startswith('heads.'))
        trunk = OrderedDict((k, v) for k, v in ckpt.items() if not k.startswith('heads.'))
        return trunk, heads, 'bare trunk'
    raise KeyError('not a dict')


def convert_vissl(ckpt: Any, keep_heads: bool = False,
                  source: str = '<checkpoint>') -> Tuple['OrderedDict', dict]:
    """``(state, meta)``: ``state`` keyed ``backbone.*`` for mmpretrain's ResNet (``heads.*``
    too with ``keep_heads``); ``meta`` names the layout and the ``backbone_cfg`` to use.

    Raises:
        ZooFormatError: ``ckpt`` is in none of :data:`LAYOUTS` or its trunk is not a ResNet
            with groups=1 (the message lists the layouts).
    """
    try:
        trunk, heads, layout = _trunk_and_heads(ckpt)
    except (KeyError, TypeError):
        raise layout_error(source, ckpt, LAYOUTS, 'VISSL') from None
    prefix = next((p for p in _TRUNK_PREFIXES if any(k.startswith(p) for k in trunk)), None)
    if prefix is None and _TORCHVISION_KEY in trunk:
        prefix = ''
        trunk = OrderedDict((k, v) for k, v in trunk.items() if not k.startswith('fc.'))
    if prefix is None:
        raise layout_error(source, ckpt, LAYOUTS, 'VISSL')
    body = tensors(OrderedDict((k[len(prefix):], v) for k, v in trunk.items()
                               if k.startswith(prefix)))
    try:
        cfg = resnet_cfg(body)
    except ValueError as e:
        raise type(e)(f'{source}: {e}') from None
    if cfg is None:
        raise layout_error(source, ckpt, [f'{lay} with a ResNet trunk (conv1, layer1..4; '
                                          'AlexNet / RegNet trunks are not supported)'
                                          for lay in LAYOUTS], 'VISSL ResNet')
    check_backbone(body, cfg, source)
    state = OrderedDict(('backbone.' + k, v) for k, v in body.items())
    if keep_heads:
        state.update(('heads.' + k, v) for k, v in tensors(heads).items())
    keys = f'{prefix}*' if prefix else 'torchvision keys'
    meta = dict(source=source, source_format=f'vissl ({layout}, {keys})',
                backbone_cfg=cfg, heads_kept=bool(keep_heads and heads))
    return state, meta
