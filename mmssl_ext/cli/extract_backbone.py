"""Keep only the backbone weights of a checkpoint, prefix stripped.

The output loads with ``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` into the backbone of
any mmpretrain or mmdet config.  (The full checkpoint works too, with ``prefix='backbone.'``.)

``--in-channels 3`` adapts a backbone pre-trained on 1-channel input (Colorization's lightness L)
to RGB: its first convolution weight (the first 4-D weight of the state dict, e.g. ResNet's
``conv1.weight`` or ResNetV1c's ``stem.0.conv.weight``), which must have 1 input channel, is
replicated to 3 channels and divided by 3, so a gray RGB image (R = G = B = x) gives the same
response as x did on the 1-channel network.
"""
import argparse
import os
import os.path as osp
from collections import OrderedDict
from typing import List, Optional

import torch

from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from mmssl_ext.version import __version__


def _state_dict_of(ckpt) -> dict:
    if isinstance(ckpt, dict) and 'state_dict' in ckpt:
        return ckpt['state_dict']
    if isinstance(ckpt, dict):
        return ckpt
    raise ValueError(f'checkpoint holds a {type(ckpt).__name__}, expected a dict')


def extract_backbone_state(ckpt, prefix: str = 'backbone.',
                           source: str = '<checkpoint>') -> 'OrderedDict[str, torch.Tensor]':
    """Return the ``prefix``-ed entries of ``ckpt``'s state dict with the prefix removed."""
    state = _state_dict_of(ckpt)
    out = OrderedDict()
    for key, value in state.items():
        k = key[len('module.'):] if key.startswith('module.') else key  # DDP-saved weights
        if k.startswith(prefix):
            out[k[len(prefix):]] = value
    if not out:
        heads = sorted({k.split('.', 1)[0] + '.' for k in state})
        raise KeyError(f'{source}: no weights with prefix {prefix!r}; the checkpoint has the '
                       f'prefixes {heads[:20]}. Pass --prefix to pick the right one.')
    return out


def replicate_input_channels(state: 'OrderedDict[str, torch.Tensor]', in_channels: int,
                             source: str = '<checkpoint>') -> str:
    """Replicate the 1-input-channel first conv of a backbone ``state`` to ``in_channels``
    input channels, divided by ``in_channels`` (in place); return the key of that weight.

    The first conv is the first 4-D floating point tensor of ``state`` (whose key ends in
    ``weight``); an error names it when it does not have exactly 1 input channel.
    """
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
    key = next((k for k, v in state.items() if k.endswith('weight') and v.ndim == 4
                and v.is_floating_point()), None)
    if key is None:
        raise ValueError(f'{source}: the backbone has no convolution weight (4-D tensor), so '
                         f'there is no 1-channel first conv to replicate to {in_channels} '
                         'channels')
    weight = state[key]
    if weight.shape[1] != 1:
        raise ValueError(f'{source}: the first convolution weight {key!r} has {weight.shape[1]} '
                         f'input channels (shape {tuple(weight.shape)}), expected 1: only a '
                         'backbone pre-trained on 1-channel input (e.g. Colorization) needs '
                         '--in-channels')
    state[key] = weight.repeat(1, in_channels, 1, 1) / in_channels
    return key


def extract_backbone(src: str, dst: str, prefix: str = 'backbone.',
                     in_channels: Optional[int] = None) -> dict:
    """Write the backbone of checkpoint ``src`` to ``dst``; return a summary.

    ``in_channels``: replicate a 1-input-channel first conv to this many input channels
    (:func:`replicate_input_channels`); ``None`` keeps the weights as they are.
    """
    ckpt = load_checkpoint_safe(src)
    state = extract_backbone_state(ckpt, prefix, source=src)
    meta = dict(source=osp.abspath(src), prefix=prefix, mmssl_ext_version=__version__)
    replicated = None
    if in_channels is not None:
        replicated = replicate_input_channels(state, in_channels, source=src)
        meta['replicated_input_channels'] = dict(key=replicated, in_channels=in_channels)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('meta'), dict):
        for key in ('epoch', 'iter', 'experiment_name'):
            if key in ckpt['meta']:
                meta[key] = ckpt['meta'][key]
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.partial'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, dst)  # never leave a truncated file under the final name
    return dict(num_tensors=len(state),
                num_params=int(sum(v.numel() for v in state.values())), out=dst,
                replicated=replicated)


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('checkpoint', help='full training checkpoint')
    p.add_argument('out', help='output file for the backbone weights')
    p.add_argument('--prefix', default='backbone.', help="key prefix to keep (default 'backbone.')")
    p.add_argument('--in-channels', type=int, default=None,
                   help='replicate a 1-input-channel first conv (e.g. of Colorization) to this '
                        'many input channels, divided by it (3 for RGB downstream configs)')
    args = p.parse_args(argv)
    info = extract_backbone(args.checkpoint, args.out, args.prefix, args.in_channels)
    if info['replicated'] is not None:
        print(f'replicated {info["replicated"]} from 1 to {args.in_channels} input channels '
              f'(divided by {args.in_channels})')
    print(f'wrote {info["num_tensors"]} tensors ({info["num_params"]:,} values) '
          f'of {args.prefix!r} to {args.out}')
    return info
