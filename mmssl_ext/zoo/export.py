"""Our backbones -> torchvision ResNet / timm ViT state dicts, for users of other stacks.

mmpretrain's ``ResNet`` (``style='pytorch'``) has torchvision's keys, so a ResNet exports as
its backbone state dict (no ``fc``: ``model.load_state_dict(sd, strict=False)`` or set
``model.fc = nn.Identity()``, as DINO's hubconf does). A ``VisionTransformer`` exports with
timm's / DINO's keys (:data:`mmssl_ext.zoo.dino.VIT_KEY_PAIRS` read backwards). Reading
the export back with the DINO converter gives the original weights (the round trip is the
identity).
"""
from collections import OrderedDict
from typing import Any, Tuple

from mmssl_ext.utils.checkpoint import select_backbone, state_dict_of, strip_prefix

from .common import ZooFormatError, backbone_cfg, tensors
from .dino import MMPRETRAIN_TO_TIMM, rename

TORCHVISION_DEPTHS = (18, 34, 50, 101, 152)


def export_backbone(ckpt: Any, weights: str = 'default',
                    source: str = '<checkpoint>') -> Tuple['OrderedDict', dict]:
    """``(state, meta)``: the backbone of one of our checkpoints (training checkpoint, a
    teacher-student one with ``weights``, a backbone-only or zoo-converted file) keyed as
    torchvision's ResNet or timm's ViT; ``meta['format']`` says which.

    Raises:
        ZooFormatError: the backbone is neither an mmpretrain ``ResNet`` with torchvision's
            layout nor a ``VisionTransformer`` timm's keys describe.
    """
    state = tensors(state_dict_of(ckpt, source=source))
    choice = select_backbone(state, weights, source=source,
                             meta=ckpt.get('meta') if isinstance(ckpt, dict) else None)
    body = strip_prefix(state, choice.prefix)
    cfg = backbone_cfg(body)
    if cfg is None:
        raise ZooFormatError(
            f'{source}: {choice.description} is not an mmpretrain ResNet (conv1, bn1, '
            'layer1..4: torchvision\'s keys) nor a VisionTransformer; only those export '
            '(ResNetV1c / V1d stems and other backbones have no torchvision / timm twin)')
    meta = dict(source=source, weights=choice.weights, backbone_cfg=cfg)
    if cfg['type'] == 'ResNet':
        standard = cfg['depth'] in TORCHVISION_DEPTHS and 'base_channels' not in cfg
        meta.update(format='torchvision ResNet',
                    torchvision_model=f'resnet{cfg["depth"]}' if standard else None)
        return OrderedDict(body), meta
    extra = [k for k in body if k.startswith(('pre_norm.', 'ln2.'))]
    if extra:
        raise ZooFormatError(f'{source}: a VisionTransformer with {extra[:2]} (pre_norm / '
                             'avg_featmap norm) has no timm ViT twin')
    meta.update(format='timm ViT')
    return rename(body, MMPRETRAIN_TO_TIMM), meta
