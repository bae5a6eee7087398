"""Class-balanced label subsets; see `python tools/make_semi_subset.py -h`."""
from mmssl_ext.cli.make_semi_subset import main

if __name__ == '__main__':
    main()
