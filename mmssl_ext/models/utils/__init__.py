"""Tensor utilities shared by the models (colour spaces, BatchNorm helpers, ...)."""
from .batchnorm import bn_running_stats_frozen  # noqa: F401
from .lab import ABQuantizer, in_gamut_ab_bins, lab_to_rgb, rgb_to_lab  # noqa: F401
