"""Models: algorithms (one file per method), necks, heads, losses, memory banks."""
from . import (algorithms, data_preprocessors, heads, losses, memories, necks,  # noqa: F401
               utils)  # (registration)
from .algorithms import PIRL
from .data_preprocessors import (CMCDataPreprocessor, ColorizationDataPreprocessor,
                                 PatchViewDataPreprocessor, SobelDataPreprocessor)
from .losses import DistillationKLLoss, InfoNCELoss, NCELoss
from .memories import MemoryBank
from .necks import JigsawProjectionNeck

__all__ = ['CMCDataPreprocessor', 'ColorizationDataPreprocessor', 'DistillationKLLoss',
           'InfoNCELoss', 'JigsawProjectionNeck', 'MemoryBank', 'NCELoss', 'PIRL',
           'PatchViewDataPreprocessor', 'SobelDataPreprocessor']
