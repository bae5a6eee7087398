"""Losses of the self-supervised methods (plain nn.Modules registered in MODELS)."""
from .nce import InfoNCELoss, NCELoss

__all__ = ['InfoNCELoss', 'NCELoss']
