"""The head of BigBiGAN's encoder E: backbone features -> the latent ``z``'s distribution."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS
from ..heads.bigbigan_blocks import ResidualMLP, check_positive


@MODELS.register_module()
class BigBiGANEncoderNeck(BaseModule):
    """Pooled backbone features -> ``(mu, sigma)`` of a diagonal Gaussian over ``z``::

        f = avgpool(backbone output)                    B x in_channels
        h = ResidualMLP(f)  (num_layers linear layers with skips; none when num_layers=0)
        [mu, s] = W h;  sigma = softplus(s) + min_sigma           (stochastic)
        mu = W h;       sigma = None                              (deterministic)

    BigBiGAN's non-deterministic encoder samples ``z = mu + sigma * eps`` (the algorithm draws
    ``eps``); the backbone before this head is what transfers.  No spectral norm (the paper puts
    it on G and D).

    Args:
        in_channels (int): Channels of the backbone's last feature map (2048 for ResNet-50).
        latent_dim (int): Size of ``z``.
        hid_channels (int): Width of the MLP. Defaults to 1024.
        num_layers (int): Linear layers of the MLP before the output layer. Defaults to 2.
        stochastic (bool): Predict ``sigma`` too. Defaults to True.
        min_sigma (float): Added to ``softplus``, > 0 keeps ``sigma`` off zero. Defaults to 1e-4.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 latent_dim: int,
                 hid_channels: int = 1024,
                 num_layers: int = 2,
                 stochastic: bool = True,
                 min_sigma: float = 1e-4,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_positive('BigBiGANEncoderNeck', in_channels=in_channels, latent_dim=latent_dim,
                       hid_channels=hid_channels)
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f'BigBiGANEncoderNeck: num_layers must be an int >= 0, '
                             f'got {num_layers!r}')
        if min_sigma < 0:
            raise ValueError(f'BigBiGANEncoderNeck: min_sigma must be >= 0, got {min_sigma}')
        self.in_channels = in_channels
        self.latent_dim = latent_dim
        self.stochastic = bool(stochastic)
        self.min_sigma = float(min_sigma)
        self.mlp = ResidualMLP(in_channels, hid_channels, num_layers, sn=False) \
            if num_layers else nn.Identity()
        width = hid_channels if num_layers else in_channels
        self.out = nn.Linear(width, latent_dim * (2 if self.stochastic else 1))

    def forward(self, feats: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if x.ndim == 4:
            x = x.mean(dim=(2, 3))
        if x.ndim != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f'BigBiGANEncoderNeck: expected B x {self.in_channels} features '
                             f'(in_channels; a feature map is average-pooled), got '
                             f'{tuple(x.shape)}')
        out = self.out(self.mlp(x))
        if not self.stochastic:
            return out, None
        mu, s = out.chunk(2, dim=1)
        return mu, F.softplus(s) + self.min_sigma
