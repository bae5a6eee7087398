from .colorization import Colorization, ColorizationDataPreprocessor
from .dino import DINO
from .inpainting import ContextEncoder
from .jigsaw import JigsawPuzzle
from .npid import NPID
from .pirl import PIRL
from .relative_loc import RelativeLocation
from .rotation import RotationPrediction

__all__ = [
    'Colorization', 'ColorizationDataPreprocessor', 'ContextEncoder',
    'DINO', 'JigsawPuzzle', 'NPID', 'PIRL', 'RelativeLocation',
    'RotationPrediction'
]
