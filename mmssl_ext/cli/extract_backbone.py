"""Keep only the backbone weights of a checkpoint, prefix stripped.

The output loads with ``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` into the backbone of
any mmpretrain or mmdet config.  (The full checkpoint works too, with ``prefix='backbone.'``.)

Teacher-student checkpoints hold two backbones; by default the one the method's authors evaluate
is kept (DINO: the EMA teacher; MoCo v2/v3: the query encoder; BYOL: the online network), and
``--weights teacher|student`` picks the other; the output names the one written.

``--in-channels 3`` adapts a backbone pre-trained on 1-channel input (Colorization's lightness L)
to RGB: its first convolution weight (the first 4-D weight of the state dict, e.g. ResNet's
``conv1.weight`` or ResNetV1c's ``stem.0.conv.weight``), which must have 1 input channel, is
replicated to 3 channels and divided by 3, so a gray RGB image (R = G = B = x) gives the same
response as x did on the 1-channel network.
"""
import argparse
from typing import List, Optional

# the functions lived here before utils.checkpoint: kept importable from here
from mmssl_ext.utils.checkpoint import (WEIGHTS_CHOICES, extract_backbone,  # noqa: F401
                                        extract_backbone_state, replicate_input_channels)


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('checkpoint', help='full training checkpoint')
    p.add_argument('out', help='output file for the backbone weights')
    p.add_argument('--prefix', default=None,
                   help="key prefix to keep (default: 'backbone.', or the evaluated backbone of "
                        'a teacher-student checkpoint, see --weights)')
    p.add_argument('--weights', choices=WEIGHTS_CHOICES, default='default',
                   help="teacher-student checkpoints: 'default' keeps the backbone the method's "
                        "authors evaluate (DINO: teacher; MoCo, BYOL: student), 'teacher' / "
                        "'student' the one named")
    p.add_argument('--in-channels', type=int, default=None,
                   help='replicate a 1-input-channel first conv (e.g. of Colorization) to this '
                        'many input channels, divided by it (3 for RGB downstream configs)')
    args = p.parse_args(argv)
    info = extract_backbone(args.checkpoint, args.out, args.prefix, args.in_channels,
                            weights=args.weights)
    if info['replicated'] is not None:
        print(f'replicated {info["replicated"]} from 1 to {args.in_channels} input channels '
              f'(divided by {args.in_channels})')
    print(f'weights: {info["description"]}')
    print(f'wrote {info["num_tensors"]} tensors ({info["num_params"]:,} values) '
          f'of {info["prefix"]!r} to {args.out}')
    return info
