from .bigbigan import BigBiGAN  # noqa: F401
from .cmc import CMC, CMCDataPreprocessor
from .colorization import Colorization, ColorizationDataPreprocessor
from .cpc import CPCv2
from .deepcluster import DeepCluster, SobelDataPreprocessor
from .dino import DINO, MMSSLDINO
from .exemplar_cnn import ExemplarCNN  # noqa: F401
from .inpainting import ContextEncoder
from .jigsaw import JigsawPuzzle
from .looc import LooC  # noqa: F401
from .amdim import AMDIM  # noqa: F401
from .local_agg import LocalAggregation  # noqa: F401
from .npid import NPID
from .odc import ODC
from .pcl import PCL  # noqa: F401
from .pirl import PIRL
from .relative_loc import RelativeLocation
from .rotation import RotationPrediction
from .sela import SeLa  # noqa: F401
from .dae import DenoisingAE  # noqa: F401
from .cae_contractive import ContractiveAE  # noqa: F401
from .vae import VariationalAE  # noqa: F401

__all__ = [
    'CMC', 'CMCDataPreprocessor', 'Colorization', 'ColorizationDataPreprocessor', 'ContextEncoder',
    'CPCv2', 'DeepCluster', 'DINO', 'JigsawPuzzle', 'MMSSLDINO', 'NPID', 'ODC', 'PIRL',
    'RelativeLocation', 'RotationPrediction', 'SobelDataPreprocessor'
]
