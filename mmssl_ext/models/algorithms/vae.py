"""Variational auto-encoder (Kingma & Welling, ICLR 2014, "Auto-Encoding Variational Bayes")
with a deep convolutional encoder."""
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmpretrain.structures import DataSample

from mmssl_ext.models.algorithms.autoencoder import AutoEncoderBase
from mmssl_ext.registry import MODELS

REPRESENTATIONS = ('backbone', 'posterior_mean')


class VAERepresentation(nn.Module):
    """A 'backbone' for feature extraction (``tools/knn_eval.py --representation``):
    ``'backbone'`` gives the backbone's outputs, ``'posterior_mean'`` ``(mu, )``."""

    def __init__(self, model: 'VariationalAE', representation: str):
        super().__init__()
        if representation not in REPRESENTATIONS:
            raise ValueError(f'VariationalAE: representation must be one of {REPRESENTATIONS} '
                             f'(got {representation!r})')
        self.model = model
        self.representation = representation

    def forward(self, inputs: torch.Tensor):
        if self.representation == 'backbone':
            return self.model.backbone(inputs)
        return (self.model.posterior(self.model.pooled(inputs))[0], )


@MODELS.register_module()
class VariationalAE(AutoEncoderBase):
    """The ELBO with a Gaussian posterior on the pooled encoder features.

    Per batch (``x`` the images, one sample of ``z`` per image)::

        f          = avgpool(backbone(x))
        mu, logvar = posterior(f)                       AEGaussianPosterior (two linear heads)
        z          = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)   (reparameterisation)
        x_hat      = head(z)                            AEDecoderHead
        loss       = -log p(x | z) + beta_t * KL(N(mu, exp(logvar)) || N(0, I))   (ELBOLoss)

    Likelihood: ``ELBOLoss(likelihood='gaussian', sigma)``, a Gaussian of fixed variance on the
    normalised images (the default; any normalisation), or ``'bernoulli'`` on [0, 1] images
    (``data_preprocessor`` with ``mean=0, std=255``), the paper's MNIST choice.

    KL annealing: ``beta_t = kl_weight_start + (kl_weight - kl_weight_start) * min(1, t /
    kl_warmup_iters)``, ``t`` the training forward passes done so far, counted in the buffer
    ``kl_steps`` (saved in the checkpoint, so a resumed run continues the schedule exactly; the
    same on every rank).  ``kl_warmup_iters=0`` (default): ``beta = kl_weight`` throughout, the
    plain ELBO at ``kl_weight=1``.

    Transfer: the pooled backbone features (``representation='backbone'``, the default), what
    ``extract_feat``, the kNN hook, ``tools/extract_backbone.py`` and the transfer configs use:
    ``mu`` is a linear map of them to ``latent_dim`` values, so a linear probe on ``mu`` cannot
    beat one on ``f``.  ``representation='posterior_mean'`` makes ``extract_feat`` (and
    ``tools/knn_eval.py --representation posterior_mean``) give ``mu`` instead.

    Args:
        backbone (dict): The encoder, any mmpretrain backbone.
        head (dict): ``AEDecoderHead`` config (sizes taken from the model when left out).
        posterior (dict): ``AEGaussianPosterior`` config; ``in_channels`` from the backbone.
        loss (dict): ``ELBOLoss`` config.
        kl_weight (float): ``beta`` after the warm-up, >= 0. Defaults to 1.
        kl_warmup_iters (int): Length of the linear KL warm-up, >= 0. Defaults to 0.
        kl_weight_start (float): ``beta`` at step 0 of the warm-up. Defaults to 0.
        representation (str): What ``extract_feat`` gives, one of :data:`REPRESENTATIONS`.
        input_size (int): Training image side. Defaults to 32.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 posterior: dict = dict(type='AEGaussianPosterior', latent_dim=128),
                 loss: dict = dict(type='ELBOLoss'),
                 kl_weight: float = 1.0,
                 kl_warmup_iters: int = 0,
                 kl_weight_start: float = 0.0,
                 representation: str = 'backbone',
                 input_size: int = 32,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if 'latent_dim' not in posterior:
            raise ValueError('VariationalAE: posterior.latent_dim (the size of z) is required')
        if representation not in REPRESENTATIONS:
            raise ValueError(f'VariationalAE: representation must be one of {REPRESENTATIONS} '
                             f'(got {representation!r})')
        if not (float(kl_weight) >= 0 and float(kl_weight_start) >= 0):
            raise ValueError(f'VariationalAE: kl_weight and kl_weight_start must be >= 0, got '
                             f'{kl_weight!r} and {kl_weight_start!r}')
        if isinstance(kl_warmup_iters, bool) or not isinstance(kl_warmup_iters, int) \
                or kl_warmup_iters < 0:
            raise ValueError(f'VariationalAE: kl_warmup_iters must be an int >= 0 (0: no '
                             f'annealing), got {kl_warmup_iters!r}')
        super().__init__(backbone=backbone, head=head, loss=loss, input_size=input_size,
                         code_dim=posterior['latent_dim'], data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        posterior = dict(posterior)
        if posterior.setdefault('in_channels', self.feat_channels) != self.feat_channels:
            raise ValueError(f'VariationalAE: posterior.in_channels={posterior["in_channels"]} '
                             f'but the backbone has {self.feat_channels} channels; leave it out')
        self.posterior = MODELS.build(posterior)
        self.kl_weight = float(kl_weight)
        self.kl_warmup_iters = kl_warmup_iters
        self.kl_weight_start = float(kl_weight_start)
        self.representation = representation
        self.register_buffer('kl_steps', torch.zeros((), dtype=torch.long))

    def current_kl_weight(self) -> float:
        """``beta_t`` for ``t = kl_steps`` (see the class docstring)."""
        if self.kl_warmup_iters == 0:
            return self.kl_weight
        frac = min(1.0, int(self.kl_steps) / self.kl_warmup_iters)
        return self.kl_weight_start + (self.kl_weight - self.kl_weight_start) * frac

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)`` (torch's generator)."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def representation_encoder(self, representation: Optional[str] = None) -> nn.Module:
        return VAERepresentation(self, representation or self.representation)

    def extract_feat(self, inputs: torch.Tensor):
        return self.representation_encoder()(inputs)

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        x = self.one_view(inputs)
        mu, logvar = self.posterior(self.pooled(x))
        pred = self.head(self.reparameterize(mu, logvar))
        beta = self.current_kl_weight()
        if self.training:
            self.kl_steps += 1
        losses = self.loss_module(pred, x, mu, logvar, kl_weight=beta)
        losses['kl_weight'] = torch.tensor(beta, device=x.device)
        return losses
