"""Deprecated alias of :mod:`mmssl_ext.cli.detection_transfer` (moved there; kept for one release)."""
import sys
import warnings

from mmssl_ext.cli import detection_transfer as _moved

warnings.warn('mmssl_ext.apis.detection_transfer moved to mmssl_ext.cli.detection_transfer; the old name goes in the next '
              'release', DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
