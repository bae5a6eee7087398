"""Write the list of readable images under a folder; see `python tools/make_file_list.py -h`."""
import sys

from mmssl_ext.cli.make_file_list import cli

if __name__ == '__main__':
    sys.exit(cli())
