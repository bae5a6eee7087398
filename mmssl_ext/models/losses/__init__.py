"""Losses of the self-supervised methods (plain nn.Modules registered in MODELS)."""
from .distillation import DistillationKLLoss
from .nce import InfoNCELoss, NCELoss
from .dino_loss import DINOLoss, MMSSLDINOLoss  # noqa: F401
from .cpc_infonce import CPCInfoNCELoss  # noqa: F401
from .looc_loss import LooCLoss  # noqa: F401
from .local_agg_loss import LocalAggregationLoss  # noqa: F401
from .pcl_loss import ProtoNCELoss  # noqa: F401
from .amdim_nce import AMDIMNCELoss  # noqa: F401
from .ae_reconstruction import AEReconstructionLoss  # noqa: F401
from .contractive import ContractivePenalty  # noqa: F401
from .elbo import ELBOLoss  # noqa: F401
from .gan_hinge import GANHingeLoss  # noqa: F401

__all__ = ['DistillationKLLoss', 'InfoNCELoss', 'NCELoss']
