"""``tools/make_semi_subset.py ANN_FILE``: class-balanced, seeded label subsets."""
import argparse
from typing import Dict, List, Optional

from mmssl_ext.datasets.subset import write_subsets


def main(argv: Optional[List[str]] = None) -> Dict[float, str]:
    p = argparse.ArgumentParser(
        description='Write class-balanced, seeded label subsets of an annotation file '
                    '(e.g. meta/train.txt -> meta/train_1pct.txt, meta/train_10pct.txt).')
    p.add_argument('ann_file', help='"<path> <label>" per line, e.g. data/fashion_mnist/meta/'
                                    'train.txt')
    p.add_argument('--percent', type=float, nargs='+', default=[1, 10])
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out-dir', default=None, help='default: next to ann_file')
    args = p.parse_args(argv)
    written = write_subsets(args.ann_file, args.percent, args.seed, args.out_dir)
    for pct, path in written.items():
        with open(path) as f:
            n = sum(1 for _ in f)
        print(f'{pct:g}% subset: {n} images -> {path}')
    return written
