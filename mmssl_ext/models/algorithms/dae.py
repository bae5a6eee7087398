"""Denoising auto-encoder (Vincent et al., ICML 2008; JMLR 2010 "Stacked Denoising Autoencoders")
with a deep convolutional encoder."""
from typing import Dict, List, Optional

import torch
from mmpretrain.structures import DataSample

from mmssl_ext.models.algorithms.autoencoder import AutoEncoderBase
from mmssl_ext.registry import MODELS


@MODELS.register_module()
class DenoisingAE(AutoEncoderBase):
    """Reconstruct the clean image from a corrupted copy.

    The ``CorruptedPair`` transform gives each sample two views, ``[x, x~]``: the clean image and
    its corruption (``MaskingNoise``, ``AdditiveGaussianNoise``, ``SaltAndPepperNoise``, drawn on
    raw pixels); the data preprocessor normalises both alike.  Per batch::

        f     = avgpool(backbone(x~))        the code: the pooled encoder features (transfers)
        x_hat = head(f)                      AEDecoderHead, sized from the backbone
        loss  = L(x_hat, x)                  AEReconstructionLoss: squared error, or the
                                             cross-entropy for [0, 1] inputs ('bce')

    The paper's encoder is one sigmoid layer stacked greedily; here the encoder is a deep
    backbone trained end to end, and the code its pooled last feature map.  The loss weighs all
    pixels alike (the paper's optional extra weight on the corrupted components is not
    implemented).

    Args:
        backbone (dict): The encoder, any mmpretrain backbone.
        head (dict): ``AEDecoderHead`` config (sizes taken from the backbone when left out).
        loss (dict): Defaults to ``AEReconstructionLoss`` (``'mse'``, mean over pixels).
        input_size (int): Training image side. Defaults to 32.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 loss: dict = dict(type='AEReconstructionLoss'),
                 input_size: int = 32,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, head=head, loss=loss, input_size=input_size,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            got = len(inputs) if isinstance(inputs, (list, tuple)) else 1
            raise ValueError(f'DenoisingAE expects two views per sample, [clean, corrupted], '
                             f'got {got}; add dict(type=\'CorruptedPair\', corruptions=[...]) '
                             f'to the pipeline before PackInputs')
        clean, noisy = (self.check_image(x) for x in inputs)
        pred = self.head(self.pooled(noisy))
        return dict(loss=self.loss_module(pred, clean))
