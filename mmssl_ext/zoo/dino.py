"""Official DINO releases (facebookresearch/dino) -> mmpretrain backbones (keys with ``backbone.``).

DINO publishes backbone files (``dino_resnet50_pretrain.pth``: torchvision ResNet-50 keys;
``dino_deitsmall16_pretrain.pth``, ``dino_vitbase16_pretrain.pth``...: its timm-style
``VisionTransformer``) and full training checkpoints (``*_full_checkpoint.pth``, written by
``main_dino.py``: ``{'student', 'teacher', 'optimizer', 'epoch', 'args', 'dino_loss'}``, each
network a ``MultiCropWrapper`` with ``backbone.`` and ``head.``, the DDP-wrapped ones under
``module.``). As DINO's ``utils.load_pretrained_weights``, ``module.`` and ``backbone.`` are
stripped and the DINO head dropped; the teacher is taken unless the student is asked for (the
teacher is what DINO evaluates). ``args`` is an ``argparse.Namespace``, the one non-tensor type
allowed on top of mmssl_ext's safe allow-list (a data-only object).
"""
import argparse
import re
from collections import OrderedDict
from typing import Any, Dict, Tuple

from .common import (ZooFormatError, check_backbone, layout_error, resnet_cfg, tensors,
                     vit_cfg)

LAYOUTS = (
    'a torchvision ResNet-50 state dict (dino_resnet50_pretrain.pth; fc.* optional, dropped)',
    'a timm-style ViT state dict: cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, norm.* '
    '(dino_deitsmall16_pretrain.pth, dino_vitbase16_pretrain.pth, ...)',
    "a main_dino.py training checkpoint {'teacher': ..., 'student': ..., 'args': ...} with "
    'module.backbone.* / backbone.* keys (head.* dropped); teacher by default',
)

#: the classes DINO's training checkpoints hold besides tensors and containers
EXTRA_SAFE = (argparse.Namespace, )

#: (timm / DINO ViT key, mmpretrain VisionTransformer key) prefixes, ``{}`` a block index:
#: mmpretrain's deit3_to_mmpretrain.py mapping
VIT_KEY_PAIRS = (
    ('patch_embed.proj.', 'patch_embed.projection.'),
    ('blocks.{}.norm1.', 'layers.{}.ln1.'),
    ('blocks.{}.norm2.', 'layers.{}.ln2.'),
    ('blocks.{}.mlp.fc1.', 'layers.{}.ffn.layers.0.0.'),
    ('blocks.{}.mlp.fc2.', 'layers.{}.ffn.layers.1.'),
    ('blocks.{}.attn.', 'layers.{}.attn.'),
    ('norm.', 'ln1.'),
)


def _rename_table(pairs, reverse: bool = False):
    """``(regex, replacement)`` pairs from ``pairs`` (left -> right, or right -> left)."""
    table = []
    for a, b in pairs:
        src, dst = (b, a) if reverse else (a, b)
        table.append(('^' + re.escape(src).replace(r'\{\}', r'(\d+)'),
                      dst.replace('{}', r'\1')))
    return tuple(table)


TIMM_TO_MMPRETRAIN = _rename_table(VIT_KEY_PAIRS)
MMPRETRAIN_TO_TIMM = _rename_table(VIT_KEY_PAIRS, reverse=True)

NETWORKS = ('teacher', 'student')


def rename(state: Dict[str, Any], table) -> 'OrderedDict[str, Any]':
    """Apply the first matching ``(pattern, replacement)`` of ``table`` to every key."""
    out = OrderedDict()
    for k, v in state.items():
        for pat, rep in table:
            if re.match(pat, k):
                k = re.sub(pat, rep, k)
                break
        out[k] = v
    return out


def timm_vit_to_mmpretrain(state: Dict[str, Any]) -> 'OrderedDict[str, Any]':
    return rename(state, TIMM_TO_MMPRETRAIN)


def _strip(state: Dict[str, Any]) -> 'OrderedDict[str, Any]':
    """``module.`` and ``backbone.`` removed, DINO head dropped (``load_pretrained_weights``)."""
    out = OrderedDict()
    for k, v in state.items():
        k = k[len('module.'):] if k.startswith('module.') else k
        if k.startswith('head.'):
            continue
        out[k[len('backbone.'):] if k.startswith('backbone.') else k] = v
    return out


def convert_dino(ckpt: Any, network: str = '', source: str = '<checkpoint>'
                 ) -> Tuple['OrderedDict', dict]:
    """``(state, meta)``: ``state`` keyed ``backbone.*`` for mmpretrain's ``ResNet`` or
    ``VisionTransformer``; ``network``: ``'teacher'`` (default for a training checkpoint) or
    ``'student'``; ``meta['backbone_cfg']`` is the config the weights fit.

    Raises:
        ZooFormatError: not one of :data:`LAYOUTS` (listed), or ``network`` given for a file
            that holds one network.
    """
    if network and network not in NETWORKS:
        raise ValueError(f'network must be one of {NETWORKS}, got {network!r}')
    if not isinstance(ckpt, dict):
        raise layout_error(source, ckpt, LAYOUTS, 'DINO')
    if isinstance(ckpt.get('teacher'), dict) and isinstance(ckpt.get('student'), dict):
        chosen = network or 'teacher'
        state, layout = ckpt[chosen], f'training checkpoint, {chosen}'
    elif network:
        raise ZooFormatError(f'{source} holds one network, not a teacher and a student: drop '
                             f'the {network!r} selection (dino://{network}/...)')
    else:
        state, layout = ckpt, 'backbone file'
    body = tensors(_strip(state))
    if 'cls_token' in body and 'blocks.0.attn.qkv.weight' in body:
        body, kind = timm_vit_to_mmpretrain(body), 'ViT'
        cfg = vit_cfg(body)
    else:
        body = OrderedDict((k, v) for k, v in body.items() if not k.startswith('fc.'))
        try:
            cfg, kind = resnet_cfg(body), 'ResNet'
        except ZooFormatError as e:
            raise ZooFormatError(f'{source}: {e}') from None
    if cfg is None:
        raise layout_error(source, ckpt, LAYOUTS, 'DINO')
    check_backbone(body, cfg, source)
    state = OrderedDict(('backbone.' + k, v) for k, v in body.items())
    meta = dict(source=source, source_format=f'dino {kind} ({layout})', backbone_cfg=cfg)
    if layout.startswith('training'):
        meta['weights'] = network or 'teacher'
    return state, meta
