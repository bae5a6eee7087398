"""Test a model (same flags as mmpretrain's tools/test.py); see `python tools/test.py -h`."""
from mmssl_ext.cli.test import main

if __name__ == '__main__':
    main()
