"""Convert a dino checkpoint to an mmpretrain backbone; see `-h`."""
from mmssl_ext.cli.convert import dino_main

if __name__ == '__main__':
    dino_main()
