"""Code layers on the pooled encoder features: the contractive auto-encoder's ``h = act(W f + b)``
and the variational auto-encoder's Gaussian posterior ``q(z | x) = N(mu, diag(exp(logvar)))``."""
from typing import Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmssl_ext.models.losses.contractive import ACTIVATIONS
from mmssl_ext.registry import MODELS


def _check_dims(name: str, **dims) -> None:
    for key, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{name}: {key} must be a positive int, got {value!r}')


@MODELS.register_module()
class AECodeLayer(BaseModule):
    """``h = act(W f + b)``: ``B x in_channels`` -> ``B x code_dim``, ``act`` the sigmoid (the
    contractive auto-encoder's code layer) or the identity.

    Args:
        in_channels (int): Size of ``f`` (the pooled backbone channels).
        code_dim (int): Size of ``h``.
        activation (str): ``'sigmoid'`` or ``'linear'``. Defaults to ``'sigmoid'``.
    """

    def __init__(self, in_channels: int, code_dim: int, activation: str = 'sigmoid',
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_dims('AECodeLayer', in_channels=in_channels, code_dim=code_dim)
        if activation not in ACTIVATIONS:
            raise ValueError(f'AECodeLayer: activation must be one of {ACTIVATIONS}, '
                             f'got {activation!r}')
        self.in_channels, self.code_dim, self.activation = in_channels, code_dim, activation
        self.fc = nn.Linear(in_channels, code_dim)

    @property
    def weight(self) -> torch.Tensor:
        return self.fc.weight

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        if feat.ndim != 2 or feat.shape[1] != self.in_channels:
            raise ValueError(f'AECodeLayer: expected B x {self.in_channels} features '
                             f'(in_channels), got shape {tuple(feat.shape)}')
        h = self.fc(feat)
        return torch.sigmoid(h) if self.activation == 'sigmoid' else h


@MODELS.register_module()
class AEGaussianPosterior(BaseModule):
    """The VAE's encoder heads: ``mu = W_mu f + b_mu`` and ``logvar = W_v f + b_v``
    (``B x in_channels`` -> two ``B x latent_dim``), ``logvar`` clamped to ``logvar_range`` so
    that ``exp(logvar)`` stays finite.

    Args:
        in_channels (int): Size of ``f`` (the pooled backbone channels).
        latent_dim (int): Size of ``z``.
        logvar_range (tuple[float, float]): Clamp of ``logvar``. Defaults to (-30, 20).
    """

    def __init__(self, in_channels: int, latent_dim: int,
                 logvar_range: Tuple[float, float] = (-30.0, 20.0), init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_dims('AEGaussianPosterior', in_channels=in_channels, latent_dim=latent_dim)
        lo, hi = (float(v) for v in logvar_range)
        if not lo < hi:
            raise ValueError(f'AEGaussianPosterior: logvar_range must be (low, high) with '
                             f'low < high, got {logvar_range!r}')
        self.in_channels, self.latent_dim, self.logvar_range = in_channels, latent_dim, (lo, hi)
        self.mu = nn.Linear(in_channels, latent_dim)
        self.logvar = nn.Linear(in_channels, latent_dim)

    def forward(self, feat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if feat.ndim != 2 or feat.shape[1] != self.in_channels:
            raise ValueError(f'AEGaussianPosterior: expected B x {self.in_channels} features '
                             f'(in_channels), got shape {tuple(feat.shape)}')
        return self.mu(feat), self.logvar(feat).clamp(*self.logvar_range)
