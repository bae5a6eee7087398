"""Losses of the self-supervised methods (plain nn.Modules registered in MODELS)."""
from .distillation import DistillationKLLoss
from .nce import InfoNCELoss, NCELoss

__all__ = ['DistillationKLLoss', 'InfoNCELoss', 'NCELoss']
