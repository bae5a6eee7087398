"""Heads of the pretext and clustering methods (registered into mmpretrain's ``MODELS``)."""
from .pretext_cls_head import PretextClsHead  # noqa: F401
from .inpainting_head import ContextEncoderHead  # noqa: F401
from .colorization_head import ColorizationHead  # noqa: F401
from .dino_head import DINOHead, MMSSLDINOHead  # noqa: F401
from .sela_head import SeLaHead  # noqa: F401
from .ae_decoder import AEDecoderHead  # noqa: F401
from .ae_code import AECodeLayer, AEGaussianPosterior  # noqa: F401
from .bigbigan_generator import BigBiGANGenerator  # noqa: F401
from .bigbigan_discriminator import BigBiGANDiscriminator  # noqa: F401
