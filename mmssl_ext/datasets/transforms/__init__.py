"""Pretext transforms (registered into mmpretrain's ``TRANSFORMS``) and jigsaw permutation sets."""
from .loading import ImageLoadError, LoadImageFromFileChecked, MissingImageError
from .permutations import MAX_PERMUTATIONS, generate_permutation_set
from .pretext import JigsawPatches, PIRLViews, RandomRotation90

__all__ = [
    'ImageLoadError', 'LoadImageFromFileChecked', 'MissingImageError', 'MAX_PERMUTATIONS',
    'generate_permutation_set', 'JigsawPatches', 'PIRLViews', 'RandomRotation90'
]
