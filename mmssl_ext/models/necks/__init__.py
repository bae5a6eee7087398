from .jigsaw_projection import JigsawProjectionNeck
from .odc_neck import ODCNeck
from .bigbigan_encoder import BigBiGANEncoderNeck  # noqa: F401
from .amdim_embedding import AMDIMEmbeddingNeck  # noqa: F401
from .cpc_context import CPCContextNetwork, RowCausalConv2d  # noqa: F401

__all__ = ['JigsawProjectionNeck', 'ODCNeck']
