"""Thin CLI; the logic is in :mod:`mmssl_ext.datasets.fmnist_detection`.

usage: python tools/prepare_detection_data.py [--src DIR] [--out data/fmnist_det]
           [--num-train 4000] [--num-val 500] [--canvas-size 128] [--min-items 2]
           [--max-items 5] [--scale-range 0.9 1.8] [--max-iou 0.25] [--seed 0] [--force]
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmssl_ext.datasets.fmnist_detection import main  # noqa: E402

if __name__ == '__main__':
    main()
