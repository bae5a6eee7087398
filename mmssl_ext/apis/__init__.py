"""Deprecated: the command-line entry points moved to :mod:`mmssl_ext.cli` and the library
helpers they held to ``utils`` / ``engine`` / ``clusterfit``; ``mmssl_ext.apis.<name>`` stays an
alias of the moved module for one release."""
