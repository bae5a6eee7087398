"""mmselfsup 1.x / 0.x and OpenSelfSup checkpoints -> mmpretrain backbones (``backbone.`` keys).

mmselfsup 1.x builds its ResNet and ViT backbones on mmpretrain's, so its checkpoints
(``state_dict`` with ``backbone.*``, ``neck.*``, ``head.*``) are already mmpretrain-keyed:
they are checked (the backbone is a complete mmpretrain ``ResNet`` / ``VisionTransformer``)
and their backbone kept. Converted: OpenSelfSup / mmselfsup 0.x files (same ResNet keys, their
MoCo ``encoder_q.0.`` / ``encoder_k.0.`` copies), DDP's ``module.``, and backbone-only files
written by their ``extract_backbone_weights.py`` (no prefix).

DeepCluster (mmselfsup and OpenSelfSup) trains on Sobel-filtered images: its ResNet has a
2-channel stem (``in_channels=2``) and needs our ``SobelDataPreprocessor`` in the config
(``configs/deepcluster/deepcluster_r50_8xb64-200e_in1k.py``); such a file is refused unless
``sobel=True`` (``mmselfsup://sobel/PATH``, ``--sobel``).
"""
from collections import OrderedDict
from typing import Any, Tuple

from mmssl_ext.utils.checkpoint import select_backbone, state_dict_of, strip_prefix

from .common import ZooFormatError, backbone_cfg, check_backbone, layout_error, tensors

LAYOUTS = (
    "mmselfsup 1.x: {'state_dict': {'backbone.*', 'neck.*', 'head.*'}, 'meta', ...} with an "
    'mmpretrain ResNet or VisionTransformer backbone (checked, kept as it is)',
    "OpenSelfSup / mmselfsup 0.x: {'state_dict': {'backbone.*' or 'encoder_q.0.*', ...}} "
    '(module.* from DDP stripped)',
    'a backbone-only file (extract_backbone_weights.py): ResNet keys conv1.*, bn1.*, '
    'layer1.* .. with no prefix',
)

SOBEL_HINT = ('DeepCluster trains on Sobel-filtered images: this backbone has a 2-channel stem. '
              "Use it with model.backbone.in_channels=2 and data_preprocessor=dict(type="
              "'SobelDataPreprocessor', ...) as in "
              'configs/deepcluster/deepcluster_r50_8xb64-200e_in1k.py, and pass --sobel '
              '(scheme: mmselfsup://sobel/PATH) to convert it')


def convert_mmselfsup(ckpt: Any, sobel: bool = False,
                      source: str = '<checkpoint>') -> Tuple['OrderedDict', dict]:
    """``(state, meta)``: the backbone keyed ``backbone.*`` and ``meta['backbone_cfg']``.

    Raises:
        ZooFormatError: not one of :data:`LAYOUTS` (listed), an incomplete backbone, or a
            Sobel (2-channel) stem without ``sobel=True`` (the message says what it needs).
    """
    if not isinstance(ckpt, dict):
        raise layout_error(source, ckpt, LAYOUTS, 'mmselfsup / OpenSelfSup')
    state = tensors(state_dict_of(ckpt, source=source))
    if any(k.startswith('backbone.') for k in state):
        prefix, layout = 'backbone.', 'backbone.*'
    elif any(k.startswith('encoder_q.0.') for k in state):
        prefix, layout = 'encoder_q.0.', 'MoCo encoder_q.0.*'
    else:
        choice = select_backbone(state, source=source)
        prefix, layout = choice.prefix, 'backbone-only file'
    body = strip_prefix(state, prefix)
    try:
        cfg = backbone_cfg(body)
    except ZooFormatError as e:
        raise ZooFormatError(f'{source}: {e}') from None
    if cfg is None:
        raise layout_error(source, ckpt, LAYOUTS, 'mmselfsup / OpenSelfSup')
    check_backbone(body, cfg, source)
    if cfg['in_channels'] == 2 and not sobel:
        raise ZooFormatError(f'{source}: {SOBEL_HINT}')
    out = OrderedDict(('backbone.' + k, v) for k, v in body.items())
    meta = dict(source=source, source_format=f'mmselfsup ({layout})', backbone_cfg=cfg)
    if cfg['in_channels'] == 2:
        meta['note'] = SOBEL_HINT
    return out, meta
