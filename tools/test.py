"""Thin CLI; the logic is in :mod:`mmssl_ext.apis.test` (see `python tools/test.py -h`)."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmssl_ext.apis.test import main  # noqa: E402

if __name__ == '__main__':
    main()
