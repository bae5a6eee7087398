"""The Fashion-MNIST detection task; see `python tools/prepare_detection_data.py -h`."""
from mmssl_ext.cli.prepare_detection_data import main

if __name__ == '__main__':
    main()
