"""Convert a vissl checkpoint to an mmpretrain backbone; see `-h`."""
from mmssl_ext.cli.convert import vissl_main

if __name__ == '__main__':
    vissl_main()
