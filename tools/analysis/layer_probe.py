"""Per-stage linear / kNN probe; see `python tools/analysis/layer_probe.py -h`."""
from mmssl_ext.cli.layer_probe import main

if __name__ == '__main__':
    main()
