"""``tools/prepare_data.py``: Fashion-MNIST as IDX files and as an ImageNet-style PNG tree.

usage: python tools/prepare_data.py [--src /usr/share/datasets/fashion-mnist]
                                    [--out data/fashion_mnist] [--no-png] [--force]
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmssl_ext.datasets.fashion_mnist import DEBIAN_FMNIST_DIR, prepare_fashion_mnist
from mmssl_ext.datasets.subset import write_subsets


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--src', default=DEBIAN_FMNIST_DIR, help='folder with the 4 IDX files')
    p.add_argument('--out', default='data/fashion_mnist', help='output folder')
    p.add_argument('--no-png', action='store_true', help='only write raw/ (IDX)')
    p.add_argument('--force', action='store_true', help='redo even if already prepared')
    args = p.parse_args(argv)
    try:
        info = prepare_fashion_mnist(args.src, args.out, png=not args.no_png, force=args.force)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    state = 'already prepared' if info['skipped'] else 'prepared'
    print(f'Fashion-MNIST {state} in {args.out}: {info["counts"]}, '
          f'{info["num_classes"]} classes')
    if not args.no_png:
        # the 1 % / 10 % label subsets of the semi-supervised benchmark configs (cheap, seeded)
        for pct, path in write_subsets(osp.join(args.out, 'meta', 'train.txt'), (1, 10)).items():
            print(f'  {pct:g}% balanced label subset: {path}')
    return 0
