from .jigsaw_projection import JigsawProjectionNeck

__all__ = ['JigsawProjectionNeck']
