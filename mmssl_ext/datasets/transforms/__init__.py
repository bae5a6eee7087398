"""Pretext transforms (registered into mmpretrain's ``TRANSFORMS``) and jigsaw permutation sets."""
from .inpainting import InpaintingMask
from .loading import ImageLoadError, LoadImageFromFileChecked, MissingImageError
from .looc_views import LooCViews  # noqa: F401
from .permutations import MAX_PERMUTATIONS, generate_permutation_set
from .pretext import AllRotations90, JigsawPatches, PIRLViews, RandomRotation90
from .relative_location import NEIGHBOUR_OFFSETS, RelativeLocationPatches
from .corruption import (AdditiveGaussianNoise, CorruptedPair, MaskingNoise,  # noqa: F401
                         SaltAndPepperNoise)

__all__ = [
    'ImageLoadError', 'LoadImageFromFileChecked', 'MissingImageError', 'MAX_PERMUTATIONS',
    'generate_permutation_set', 'AllRotations90', 'InpaintingMask', 'JigsawPatches',
    'NEIGHBOUR_OFFSETS', 'PIRLViews', 'RandomRotation90', 'RelativeLocationPatches'
]
