"""Deprecated alias of :mod:`mmssl_ext.cli.extract_backbone` (moved there; kept for one release)."""
import sys
import warnings

from mmssl_ext.cli import extract_backbone as _moved

warnings.warn('mmssl_ext.apis.extract_backbone moved to mmssl_ext.cli.extract_backbone; the old name goes in the next '
              'release', DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
