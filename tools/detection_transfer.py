"""Detection transfer of several backbones (bbox mAP table).

See `python tools/detection_transfer.py -h`.
"""
from mmssl_ext.cli.detection_transfer import main

if __name__ == '__main__':
    main()
