"""``tools/prepare_detection_data.py``: the COCO-format Fashion-MNIST detection task."""
import argparse
import json
import sys
from typing import Dict, List, Optional

from mmssl_ext.datasets.fmnist_detection import (DEBIAN_FMNIST_DIR, DEFAULT_OUT, LOCAL_RAW_DIR,
                                                 prepare_fmnist_detection)


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    p = argparse.ArgumentParser(
        description='Generate a COCO-format detection / instance segmentation data set of '
                    'Fashion-MNIST items pasted on black canvases.')
    p.add_argument('--src', default=None,
                   help=f'folder with the 4 Fashion-MNIST IDX files (default: {LOCAL_RAW_DIR} '
                        f'if it has them, else {DEBIAN_FMNIST_DIR})')
    p.add_argument('--out', default=DEFAULT_OUT, help=f'output folder (default {DEFAULT_OUT})')
    p.add_argument('--num-train', type=int, default=4000, help='train canvases (default 4000)')
    p.add_argument('--num-val', type=int, default=500, help='val canvases (default 500)')
    p.add_argument('--canvas-size', type=int, default=128, help='canvas side in px (default 128)')
    p.add_argument('--min-items', type=int, default=2, help='min items per canvas (default 2)')
    p.add_argument('--max-items', type=int, default=5, help='max items per canvas (default 5)')
    p.add_argument('--scale-range', type=float, nargs=2, default=(0.9, 1.8),
                   metavar=('LOW', 'HIGH'), help='rescaling factor range of the 28 px items '
                                                 '(default 0.9 1.8)')
    p.add_argument('--max-iou', type=float, default=0.25,
                   help='max IoU between the boxes of a canvas (default 0.25)')
    p.add_argument('--seed', type=int, default=0, help='seed (train: seed, val: seed + 1)')
    p.add_argument('--force', action='store_true', help='regenerate even if already prepared')
    args = p.parse_args(argv)
    try:
        summary = prepare_fmnist_detection(
            args.src, args.out, num_train=args.num_train, num_val=args.num_val,
            canvas_size=args.canvas_size, min_items=args.min_items, max_items=args.max_items,
            scale_range=tuple(args.scale_range), max_iou=args.max_iou, seed=args.seed,
            force=args.force)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(1)
    print(json.dumps(summary, indent=2))
    return summary
