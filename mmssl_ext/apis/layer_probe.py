"""Deprecated alias of :mod:`mmssl_ext.cli.layer_probe` (moved there; kept for one release)."""
import sys
import warnings

from mmssl_ext.cli import layer_probe as _moved

warnings.warn('mmssl_ext.apis.layer_probe moved to mmssl_ext.cli.layer_probe; the old name goes in the next '
              'release', DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
