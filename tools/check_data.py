"""Thin CLI; the logic is in :mod:`mmssl_ext.datasets.checks` (``python tools/check_data.py -h``).

    python tools/check_data.py configs/pirl/pirl_r50_8xb32.py            # the training set
    python tools/check_data.py CONFIG --split train val                   # exit status 1: missing
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmssl_ext.datasets.checks import cli  # noqa: E402

if __name__ == '__main__':
    sys.exit(cli())
