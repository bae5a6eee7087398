"""Keep only the backbone weights of a checkpoint; see `python tools/extract_backbone.py -h`."""
from mmssl_ext.cli.extract_backbone import main

if __name__ == '__main__':
    main()
