"""Contractive auto-encoder (Rifai et al., ICML 2011, "Contractive Auto-Encoders: Explicit
Invariance During Feature Extraction") with a deep convolutional encoder.  Registered as
``ContractiveAE``: mmpretrain's ``CAE`` is the Context AutoEncoder."""
from typing import Dict, List, Optional, Union

import torch
from mmpretrain.structures import DataSample

from mmssl_ext.models.algorithms.autoencoder import AutoEncoderBase
from mmssl_ext.registry import MODELS


@MODELS.register_module()
class ContractiveAE(AutoEncoderBase):
    """Reconstruction plus the squared Frobenius norm of the code's Jacobian.

    Per batch (``x`` the normalised images)::

        f     = avgpool(backbone(x))         pooled encoder features (transfer)
        h     = sigmoid(W f + b)             AECodeLayer: the code
        x_hat = head(h)                      AEDecoderHead
        loss  = L(x_hat, x) + lambda * mean_b ||dh/dx||_F^2

    The penalty (``ContractivePenalty``): in the paper the encoder is the one sigmoid layer,
    whose Jacobian has the closed form ``sum_j (h_j (1 - h_j))^2 ||W_j||^2``.  For a deep
    encoder the default is ``mode='input'``: the Jacobian of ``h`` with respect to the image
    through the whole encoder, estimated without bias by random projections
    (``||J^T u||^2``, ``u ~ N(0, I)``, one extra backward pass with a graph per draw).  Why:
    that is the paper's quantity, the code's sensitivity to the input; the closed form on the
    code layer alone (``mode='code_layer'``, exact and cheap) penalises ``dh/df`` only and
    leaves the backbone, what transfers, unconstrained (it can scale ``f`` while ``W``
    shrinks).  ``mode='input_exact'`` computes the deep Jacobian exactly (a pass per code unit).

    Args:
        backbone (dict): The encoder, any mmpretrain backbone.
        head (dict): ``AEDecoderHead`` config (sizes taken from the backbone when left out).
        code_layer (dict): ``AECodeLayer`` config; ``in_channels`` is taken from the backbone.
            Defaults to a sigmoid layer of 256 units.
        penalty (dict): ``ContractivePenalty`` config.
        loss (dict): Defaults to ``AEReconstructionLoss`` (``'mse'``).
        input_size (int): Training image side. Defaults to 32.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 code_layer: dict = dict(type='AECodeLayer', code_dim=256),
                 penalty: dict = dict(type='ContractivePenalty'),
                 loss: dict = dict(type='AEReconstructionLoss'),
                 input_size: int = 32,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if 'code_dim' not in code_layer:
            raise ValueError('ContractiveAE: code_layer.code_dim (the number of code units) '
                             'is required')
        super().__init__(backbone=backbone, head=head, loss=loss, input_size=input_size,
                         code_dim=code_layer['code_dim'], data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        code_layer = dict(code_layer)
        if code_layer.setdefault('in_channels', self.feat_channels) != self.feat_channels:
            raise ValueError(f'ContractiveAE: code_layer.in_channels='
                             f'{code_layer["in_channels"]} but the backbone has '
                             f'{self.feat_channels} channels; leave it out')
        self.code_layer = MODELS.build(code_layer)
        self.penalty = MODELS.build(penalty)

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        target = self.one_view(inputs)
        x = target.detach().requires_grad_(True) if self.penalty.needs_input_grad else target
        code = self.code_layer(self.pooled(x))
        pred = self.head(code)
        penalty = self.penalty(code, inputs=x, weight=self.code_layer.weight,
                               activation=self.code_layer.activation)
        return dict(loss_recon=self.loss_module(pred, target), loss_contractive=penalty)
