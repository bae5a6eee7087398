"""Deprecated alias of :mod:`mmssl_ext.cli.analysis_common` (moved there; kept for one release)."""
import sys
import warnings

from mmssl_ext.cli import analysis_common as _moved

warnings.warn('mmssl_ext.apis.analysis_common moved to mmssl_ext.cli.analysis_common; the old name goes in the next '
              'release', DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
