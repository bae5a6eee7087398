"""Model converters: other frameworks' published weights -> mmpretrain backbones, and back.

Entry points of ``tools/model_converters/*.py``. Every converter loads its source with torch's
weights-only loader and mmssl_ext's allow-list (``--trust-pickled-code`` switches that off for
one trusted file and says what it risks), refuses a file it does not recognise with the layouts
it accepts, and writes its output atomically (never a partial file). The outputs hold
``{'state_dict': {'backbone.*': ...}, 'meta': {..., 'backbone_cfg': ...}}``: use them with
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')``; or skip the step and
point ``checkpoint`` at ``vissl://SRC``, ``dino://SRC`` or ``mmselfsup://SRC`` directly.
"""
import argparse
from typing import Callable, List, Optional

from mmssl_ext.utils.checkpoint import WEIGHTS_CHOICES, CheckpointLoadError
from mmssl_ext.zoo.common import TRUST_FLAG_HELP, ZooFormatError, load_source, save_converted


def _parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument('src', help='source checkpoint: a path or an http(s):// URL')
    p.add_argument('dst', help='output file (written atomically)')
    p.add_argument('--trust-pickled-code', action='store_true', help=TRUST_FLAG_HELP)
    return p


def _run(args, convert: Callable, extra_safe=(), **kwargs) -> dict:
    """Load, convert and save; a refused file exits with its message and writes nothing."""
    try:
        ckpt = load_source(args.src, trust_code=args.trust_pickled_code, extra_safe=extra_safe)
        state, meta = convert(ckpt, source=args.src, **kwargs)
    except (ZooFormatError, CheckpointLoadError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}') from None
    save_converted(state, args.dst, meta)
    print(f'{meta["source_format"]}: wrote {len(state)} tensors to {args.dst}; backbone config '
          f'{meta["backbone_cfg"]}')
    if meta.get('note'):
        print(meta['note'])
    return dict(state=state, meta=meta, out=args.dst)


def vissl_main(argv: Optional[List[str]] = None) -> dict:
    from mmssl_ext.zoo.vissl import LAYOUTS, convert_vissl
    p = _parser('VISSL ResNet trunk -> mmpretrain ResNet. Accepted: ' + '; '.join(LAYOUTS))
    p.add_argument('--keep-heads', action='store_true',
                   help="also keep VISSL's heads, under heads.* with VISSL's keys")
    args = p.parse_args(argv)
    return _run(args, convert_vissl, keep_heads=args.keep_heads)


def dino_main(argv: Optional[List[str]] = None) -> dict:
    from mmssl_ext.zoo.dino import EXTRA_SAFE, LAYOUTS, NETWORKS, convert_dino
    p = _parser('official DINO -> mmpretrain ResNet / VisionTransformer. Accepted: ' +
                '; '.join(LAYOUTS))
    p.add_argument('--network', choices=NETWORKS, default='',
                   help='network of a training checkpoint (default: the teacher, which DINO '
                        'evaluates)')
    args = p.parse_args(argv)
    return _run(args, convert_dino, extra_safe=EXTRA_SAFE, network=args.network)


def mmselfsup_main(argv: Optional[List[str]] = None) -> dict:
    from mmssl_ext.zoo.mmselfsup import LAYOUTS, convert_mmselfsup
    p = _parser('mmselfsup 1.x / 0.x, OpenSelfSup -> mmpretrain backbone. Accepted: ' +
                '; '.join(LAYOUTS))
    p.add_argument('--sobel', action='store_true',
                   help="accept DeepCluster's 2-channel Sobel stem (needs in_channels=2 and "
                        'SobelDataPreprocessor in the config that uses it)')
    args = p.parse_args(argv)
    return _run(args, convert_mmselfsup, sobel=args.sobel)


def export_main(argv: Optional[List[str]] = None) -> dict:
    """ours -> torchvision / timm: writes a bare state dict (what those libraries load)."""
    from mmssl_ext.zoo.export import export_backbone
    p = _parser('our backbone -> torchvision ResNet / timm ViT state dict (bare, no fc / head)')
    p.add_argument('--weights', choices=WEIGHTS_CHOICES, default='default',
                   help="teacher-student checkpoints: the backbone the method's authors "
                        "evaluate (default) or the one named")
    args = p.parse_args(argv)
    try:
        ckpt = load_source(args.src, trust_code=args.trust_pickled_code)
        state, meta = export_backbone(ckpt, args.weights, source=args.src)
    except (ZooFormatError, CheckpointLoadError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}') from None
    save_converted(state, args.dst, meta=None)
    print(f'{meta["format"]} ({meta.get("torchvision_model") or meta["backbone_cfg"]}): wrote '
          f'{len(state)} tensors to {args.dst}')
    return dict(state=state, meta=meta, out=args.dst)
