"""Invariance of representations to image transforms.

See `python tools/analysis/invariance.py -h`.
"""
from mmssl_ext.cli.invariance import main

if __name__ == '__main__':
    main()
