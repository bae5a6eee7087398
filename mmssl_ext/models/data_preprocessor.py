"""Deprecated: the data preprocessors are in :mod:`mmssl_ext.models.data_preprocessors`."""
import warnings

from mmssl_ext.models.data_preprocessors import PatchViewDataPreprocessor  # noqa: F401

warnings.warn('mmssl_ext.models.data_preprocessor is deprecated and will be removed in the next '
              'release: import from mmssl_ext.models.data_preprocessors', DeprecationWarning,
              stacklevel=2)
