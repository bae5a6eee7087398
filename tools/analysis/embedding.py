"""Thin CLI; the logic is in :mod:`mmssl_ext.apis.embedding`
(see `python tools/analysis/embedding.py -h`)."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmssl_ext.apis.embedding import main  # noqa: E402

if __name__ == '__main__':
    main()
