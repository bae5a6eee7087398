"""Layers that BigBiGAN's generator, discriminator and encoder head share."""
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm


def init_layer(layer: Union[nn.Linear, nn.Conv2d], sn: bool) -> nn.Module:
    """``layer`` with Glorot-uniform weights and zero bias (BigGAN-PyTorch's ``xavier`` init;
    its orthogonal one costs a QR decomposition per layer, minutes for the ImageNet networks),
    spectrally normalised (one power iteration per training forward; ``u`` / ``v`` are buffers,
    so they travel in checkpoints) when ``sn``."""
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return spectral_norm(layer) if sn else layer


def linear(in_features: int, out_features: int, sn: bool) -> nn.Module:
    return init_layer(nn.Linear(in_features, out_features), sn)


def conv(in_channels: int, out_channels: int, kernel_size: int, sn: bool) -> nn.Module:
    return init_layer(nn.Conv2d(in_channels, out_channels, kernel_size,
                                padding=kernel_size // 2), sn)


def check_positive(owner: str, **values) -> None:
    """Raise ``ValueError`` naming the first argument that is not a positive int."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f'{owner}: {key} must be a positive int, got {value!r}')


class ResidualMLP(nn.Module):
    """``num_layers`` linear layers with skip connections (the MLPs of BigBiGAN's ``H``, ``J``
    and of the encoder head)::

        h = W_0 x;   h = h + W_i relu(h)  (i = 1 .. num_layers - 1);   out = relu(h)
    """

    def __init__(self, in_features: int, width: int, num_layers: int, sn: bool) -> None:
        super().__init__()
        check_positive('ResidualMLP', in_features=in_features, width=width,
                       num_layers=num_layers)
        self.inp = linear(in_features, width, sn)
        self.layers = nn.ModuleList(linear(width, width, sn) for _ in range(num_layers - 1))
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer in self.layers:
            h = h + layer(F.relu(h))
        return F.relu(h)
