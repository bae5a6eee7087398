"""Models: algorithms (one file per method), necks, heads, losses, memory banks."""
from . import (algorithms, data_preprocessor, heads, losses, memories, necks,  # noqa: F401
               utils)  # (registration)
from .algorithms import PIRL
from .data_preprocessor import PatchViewDataPreprocessor
from .losses import DistillationKLLoss, InfoNCELoss, NCELoss
from .memories import MemoryBank
from .necks import JigsawProjectionNeck

__all__ = ['DistillationKLLoss', 'InfoNCELoss', 'JigsawProjectionNeck', 'MemoryBank', 'NCELoss', 'PIRL',
           'PatchViewDataPreprocessor']
