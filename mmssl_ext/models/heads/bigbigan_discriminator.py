"""BigBiGAN's joint discriminator D(x, z) with its three score terms."""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS
from .bigbigan_blocks import ResidualMLP, check_positive, conv, linear


class DiscriminatorBlock(nn.Module):
    """BigGAN's discriminator residual block: ``[ReLU]-conv3-ReLU-conv3[-avgpool2]`` plus a
    shortcut (``conv1`` where the width changes or the block down-samples).  The first block
    takes the image and is not pre-activated (its shortcut pools before the 1x1 conv)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool,
                 preactivation: bool, sn: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.preactivation = preactivation
        self.conv1 = conv(in_channels, out_channels, 3, sn)
        self.conv2 = conv(out_channels, out_channels, 3, sn)
        self.shortcut = conv(in_channels, out_channels, 1, sn) \
            if in_channels != out_channels or downsample else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        sc = x
        if self.shortcut is not None:
            sc = self._pool(self.shortcut(x)) if self.preactivation \
                else self.shortcut(self._pool(x))
        return h + sc


@MODELS.register_module()
class BigBiGANDiscriminator(BaseModule):
    """Scores a data-latent pair ``(x, z)`` with BigBiGAN's three terms::

        f_x  = F(x)             BigGAN residual blocks, ReLU, sum over space    B x channels[-1]
        h_z  = H(z)             residual MLP                                    B x mlp_channels
        j    = J([f_x, h_z])    residual MLP                                    B x mlp_channels
        s_x  = theta_x . f_x     s_z = theta_z . h_z     s_xz = theta_xz . j    each B

    ``s_x`` sees the image only, ``s_z`` the latent only, ``s_xz`` both; the loss
    (``GANHingeLoss``) sums the hinge of each.  Spectral norm on every layer (BigGAN's D).
    ``F`` takes any image size (the spatial sum pools it); the BigGAN CIFAR discriminator for
    32 px is ``channels=(128, 128, 128, 128)``, ``downsample=(True, True, False, False)``.

    Args:
        latent_dim (int): Size of ``z``.
        channels (Sequence[int]): Widths of ``F``'s blocks.
        downsample (Sequence[bool]): Per block, whether it halves the resolution.
        mlp_channels (int): Width of ``H`` and ``J``.
        mlp_layers (int): Linear layers of ``H`` and of ``J``.
        in_channels (int): Image channels. Defaults to 3.
        spectral_norm (bool): Defaults to True.
        init_cfg (dict, optional): Initialisation config (the layers start Glorot-uniform).
    """

    TERMS = ('x', 'z', 'xz')

    def __init__(self,
                 latent_dim: int,
                 channels: Sequence[int] = (128, 128, 128, 128),
                 downsample: Sequence[bool] = (True, True, False, False),
                 mlp_channels: int = 256,
                 mlp_layers: int = 4,
                 in_channels: int = 3,
                 spectral_norm: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        channels, downsample = tuple(channels), tuple(downsample)
        if not channels or len(channels) != len(downsample):
            raise ValueError(f'BigBiGANDiscriminator: channels {channels} and downsample '
                             f'{downsample} must be non-empty and of the same length (one '
                             f'entry per block)')
        check_positive('BigBiGANDiscriminator', latent_dim=latent_dim,
                       mlp_channels=mlp_channels, mlp_layers=mlp_layers,
                       in_channels=in_channels,
                       **{f'channels[{i}]': c for i, c in enumerate(channels)})
        self.latent_dim = latent_dim
        self.in_channels = in_channels
        widths = (in_channels, ) + channels
        self.blocks = nn.Sequential(*(
            DiscriminatorBlock(cin, cout, bool(down), preactivation=i > 0, sn=spectral_norm)
            for i, (cin, cout, down) in enumerate(zip(widths[:-1], widths[1:], downsample))))
        self.h = ResidualMLP(latent_dim, mlp_channels, mlp_layers, spectral_norm)
        self.j = ResidualMLP(channels[-1] + mlp_channels, mlp_channels, mlp_layers,
                             spectral_norm)
        self.score_x = linear(channels[-1], 1, spectral_norm)
        self.score_z = linear(mlp_channels, 1, spectral_norm)
        self.score_xz = linear(mlp_channels, 1, spectral_norm)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{'x': s_x, 'z': s_z, 'xz': s_xz}``, each of shape ``(B, )``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'BigBiGANDiscriminator: x must be B x {self.in_channels} x H x W '
                             f'(in_channels), got shape {tuple(x.shape)}')
        if z.ndim != 2 or z.shape != (x.shape[0], self.latent_dim):
            raise ValueError(f'BigBiGANDiscriminator: z must be {x.shape[0]} x '
                             f'{self.latent_dim} (batch x latent_dim), got {tuple(z.shape)}')
        f_x = F.relu(self.blocks(x)).sum(dim=(2, 3))
        h_z = self.h(z)
        j = self.j(torch.cat([f_x, h_z], dim=1))
        return dict(x=self.score_x(f_x)[:, 0], z=self.score_z(h_z)[:, 0],
                    xz=self.score_xz(j)[:, 0])
