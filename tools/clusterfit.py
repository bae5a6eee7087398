"""Thin CLI; the logic is in :mod:`mmssl_ext.clusterfit` (`python tools/clusterfit.py -h`)."""
from mmssl_ext.cli.clusterfit import main

if __name__ == '__main__':
    main()
