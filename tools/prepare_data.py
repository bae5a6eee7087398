"""Prepare Fashion-MNIST under data/fashion_mnist; see `python tools/prepare_data.py -h`."""
import sys

from mmssl_ext.cli.prepare_data import main

if __name__ == '__main__':
    sys.exit(main())
