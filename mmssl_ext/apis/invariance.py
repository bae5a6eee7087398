"""Deprecated alias of :mod:`mmssl_ext.cli.invariance` (moved there; kept for one release)."""
import sys
import warnings

from mmssl_ext.cli import invariance as _moved

warnings.warn('mmssl_ext.apis.invariance moved to mmssl_ext.cli.invariance; the old name goes in the next '
              'release', DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
