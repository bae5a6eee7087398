from .jigsaw_projection import JigsawProjectionNeck
from .cpc_context import CPCContextNetwork, RowCausalConv2d  # noqa: F401

__all__ = ['JigsawProjectionNeck']
