"""Keep only the backbone weights of a checkpoint, prefix stripped.

The output loads with ``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` into the backbone of
any mmpretrain or mmdet config.  (The full checkpoint works too, with ``prefix='backbone.'``.)
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


def extract_backbone(src: str, dst: str, prefix: str = 'backbone.') -> dict:
    """Write the backbone of checkpoint ``src`` to ``dst``; return a summary."""
    ckpt = load_checkpoint_safe(src)
    state = extract_backbone_state(ckpt, prefix, source=src)
    meta = dict(source=osp.abspath(src), prefix=prefix, mmssl_ext_version=__version__)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('meta'), dict):
        for key in ('epoch', 'iter', 'experiment_name'):
            if key in ckpt['meta']:
                meta[key] = ckpt['meta'][key]
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.partial'
    torch.save(dict(state_dict=state, meta=meta), tmp)
    os.replace(tmp, dst)  # never leave a truncated file under the final name
    return dict(num_tensors=len(state),
                num_params=int(sum(v.numel() for v in state.values())), out=dst)


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('checkpoint', help='full training checkpoint')
    p.add_argument('out', help='output file for the backbone weights')
    p.add_argument('--prefix', default='backbone.', help="key prefix to keep (default 'backbone.')")
    args = p.parse_args(argv)
    info = extract_backbone(args.checkpoint, args.out, args.prefix)
    print(f'wrote {info["num_tensors"]} tensors ({info["num_params"]:,} values) '
          f'of {args.prefix!r} to {args.out}')
    return info
