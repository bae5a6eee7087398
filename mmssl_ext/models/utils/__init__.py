"""Tensor utilities shared by the models (colour spaces, ...)."""
from .lab import ABQuantizer, in_gamut_ab_bins, lab_to_rgb, rgb_to_lab  # noqa: F401
