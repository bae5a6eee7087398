"""List the files a config's dataset names but the disk lacks (exit 1 if any).

See `python tools/check_data.py -h`.
"""
import sys

from mmssl_ext.cli.check_data import cli

if __name__ == '__main__':
    sys.exit(cli())
