"""Weighted-kNN evaluation of a backbone; see `python tools/knn_eval.py -h`."""
from mmssl_ext.cli.knn_eval import main

if __name__ == '__main__':
    main()
