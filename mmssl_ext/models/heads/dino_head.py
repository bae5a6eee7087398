"""DINO's projection head: MLP -> L2-normalised bottleneck -> weight-normalised prototypes."""
from typing import Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class MMSSLDINOHead(BaseModule):
    """The DINO head (Caron et al., ICCV 2021), shared by student and teacher::

        z = MLP(x)                 num_layers linear layers, GELU between (BN optional), the last
                                   one to the bottleneck (in -> 2048 -> 2048 -> 256)
        z = z / ||z||_2
        y = W z                    W = g * V / ||V||_row: a weight-normalised linear layer with
                                   no bias (256 -> K = 65536 prototypes); with
                                   ``norm_last_layer`` the gains g are fixed to 1

    The last layer is ``torch.nn.utils.parametrizations.weight_norm(nn.Linear(...))``, exposed as
    :attr:`last_layer` so that :class:`~mmssl_ext.models.algorithms.MMSSLDINO` can freeze it for the
    first iterations.  The MLP's linear layers are initialised with a truncated normal (std 0.02)
    and zero biases, as in the official code.

    Args:
        in_channels: backbone feature size (2048 for ResNet-50, 384 for ViT-S).
        out_channels: ``K``, the number of prototypes (65536).
        hidden_channels: MLP width (2048).
        bottleneck_channels: bottleneck size (256).
        num_layers: linear layers of the MLP (3; 1 = a single linear layer to the bottleneck).
        use_bn: BatchNorm after the hidden linear layers (False; the official ResNet-50 run too).
        norm_last_layer: fix the weight-norm gains to 1 (True; the paper's stabler choice).

    Input: a ``(B, C)`` tensor, or a tuple of them (the last one is used: the output of a backbone
    with ``out_type='cls_token'`` or of a ``GlobalAveragePooling`` neck).  Output: ``(B, K)``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 65536,
                 hidden_channels: int = 2048,
                 bottleneck_channels: int = 256,
                 num_layers: int = 3,
                 use_bn: bool = False,
                 norm_last_layer: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels), ('out_channels', out_channels),
                            ('hidden_channels', hidden_channels),
                            ('bottleneck_channels', bottleneck_channels),
                            ('num_layers', num_layers)):
            if int(value) < 1:
                raise ValueError(f'DINOHead: {name} must be >= 1, got {value}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        if num_layers == 1:
            layers = [nn.Linear(in_channels, bottleneck_channels)]
        else:
            layers = []
            dims = [in_channels] + [hidden_channels] * (num_layers - 1)
            for d_in, d_out in zip(dims[:-1], dims[1:]):
                layers.append(nn.Linear(d_in, d_out))
                if use_bn:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.GELU())
            layers.append(nn.Linear(hidden_channels, bottleneck_channels))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck_channels, out_channels, bias=False))
        gains = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            gains.fill_(1.0)
        if norm_last_layer:
            gains.requires_grad_(False)
        self.norm_last_layer = norm_last_layer

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:  # the official initialisation (the last layer keeps its own)
            for m in self.mlp.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)

    def forward(self, x: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
        if isinstance(x, (tuple, list)):
            x = x[-1]
        if x.ndim != 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'DINOHead: expected features of shape (B, {self.in_channels}), got '
                f'{tuple(x.shape)}; pool feature maps first (neck=dict(type='
                f'"GlobalAveragePooling")) or use a ViT with out_type="cls_token"')
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


# deprecated alias of the old class name, for one release (mmpretrain's projects/dino registers
# its own DINOHead into the same registry)
DINOHead = MMSSLDINOHead
