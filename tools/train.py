"""Train a model (same flags as mmpretrain's tools/train.py); see `python tools/train.py -h`."""
from mmssl_ext.cli.train import main

if __name__ == '__main__':
    main()
