"""Deprecated alias of :mod:`mmssl_ext.cli.layer_probe` (one release)."""
import sys
import warnings

from mmssl_ext.cli import layer_probe as _moved

warnings.warn(f'{__name__} moved to {_moved.__name__}; the old name goes in the next release',
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
