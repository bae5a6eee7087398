"""Thin CLI; the logic is in :mod:`mmssl_ext.datasets.subset` (see `python tools/make_semi_subset.py -h`)."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmssl_ext.datasets.subset import main  # noqa: E402

if __name__ == '__main__':
    main()
