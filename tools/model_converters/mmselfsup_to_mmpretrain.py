"""Convert a mmselfsup checkpoint to an mmpretrain backbone; see `-h`."""
from mmssl_ext.cli.convert import mmselfsup_main

if __name__ == '__main__':
    mmselfsup_main()
