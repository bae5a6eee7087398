"""BigBiGAN's generator G: a BigGAN-style residual generator sized by its config."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS
from .bigbigan_blocks import check_positive, conv, linear


class GeneratorBlock(nn.Module):
    """BigGAN's up-sampling residual block: ``BN-ReLU-up2-conv3-BN-ReLU-conv3`` plus a
    ``up2-conv1`` shortcut (nearest-neighbour up-sampling)."""

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict, sn: bool) -> None:
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv1 = conv(in_channels, out_channels, 3, sn)
        self.norm2 = build_norm_layer(norm_cfg, out_channels)[1]
        self.conv2 = conv(out_channels, out_channels, 3, sn)
        self.shortcut = conv(in_channels, out_channels, 1, sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x)), scale_factor=2, mode='nearest')
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode='nearest'))


@MODELS.register_module()
class BigBiGANGenerator(BaseModule):
    """Latent ``z`` -> image in ``[-1, 1]`` (BigGAN's unconditional generator, plain blocks)::

        z (B x latent_dim) -> linear -> channels[0] x bottom_size^2
        len(channels) x GeneratorBlock (2x up-sampling, widths ``channels``)
        BN-ReLU-conv3 -> out_channels, tanh     ->  B x out_channels x out_size x out_size

    ``out_size`` must be ``bottom_size * 2 ** len(channels)``: 32 px from 4 x 4 takes three
    blocks (BigGAN's CIFAR generator: ``channels=(256, 256, 256)``).  Spectral norm on every
    linear / conv layer (BigGAN's G), BatchNorm between them.

    Args:
        latent_dim (int): Size of ``z``.
        channels (Sequence[int]): Widths of the up-sampling blocks (also of the bottom map).
        out_size (int): Output height = width.
        bottom_size (int): Height = width of the first feature map. Defaults to 4.
        out_channels (int): Image channels. Defaults to 3.
        spectral_norm (bool): Defaults to True.
        norm_cfg (dict): Defaults to ``dict(type='BN')``.
        init_cfg (dict, optional): Initialisation config (the layers start Glorot-uniform).
    """

    def __init__(self,
                 latent_dim: int,
                 channels: Sequence[int] = (256, 256, 256),
                 out_size: int = 32,
                 bottom_size: int = 4,
                 out_channels: int = 3,
                 spectral_norm: bool = True,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        channels = tuple(channels)
        check_positive('BigBiGANGenerator', latent_dim=latent_dim, out_size=out_size,
                       bottom_size=bottom_size, out_channels=out_channels)
        if not channels:
            raise ValueError('BigBiGANGenerator: channels must list at least one block width')
        check_positive('BigBiGANGenerator', **{f'channels[{i}]': c
                                               for i, c in enumerate(channels)})
        if bottom_size * 2**len(channels) != out_size:
            raise ValueError(f'BigBiGANGenerator: {len(channels)} up-sampling blocks '
                             f'(len(channels)) from bottom_size={bottom_size} give '
                             f'{bottom_size * 2**len(channels)} px, not out_size={out_size}; '
                             f'use log2(out_size / bottom_size) blocks')
        self.latent_dim = latent_dim
        self.out_size = out_size
        self.bottom_size = bottom_size
        self.out_channels = out_channels
        self.fc = linear(latent_dim, channels[0] * bottom_size**2, spectral_norm)
        widths = (channels[0], ) + channels
        self.blocks = nn.Sequential(*(GeneratorBlock(cin, cout, norm_cfg, spectral_norm)
                                      for cin, cout in zip(widths[:-1], widths[1:])))
        self.out_norm = build_norm_layer(norm_cfg, channels[-1])[1]
        self.out_conv = conv(channels[-1], out_channels, 3, spectral_norm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f'BigBiGANGenerator: z must be B x {self.latent_dim} '
                             f'(latent_dim), got shape {tuple(z.shape)}')
        h = self.fc(z).view(z.shape[0], -1, self.bottom_size, self.bottom_size)
        h = self.blocks(h)
        return torch.tanh(self.out_conv(F.relu(self.out_norm(h))))
