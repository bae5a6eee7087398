"""The negative evidence lower bound of the variational auto-encoder (Kingma & Welling, ICLR 2014,
"Auto-Encoding Variational Bayes"), with a Gaussian posterior and a standard normal prior."""
import math
from typing import Dict

import torch
import torch.nn as nn

from mmssl_ext.models.losses.ae_reconstruction import AEReconstructionLoss
from mmssl_ext.registry import MODELS


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per sample (``B x J`` -> ``B``), the closed
    form of the paper's appendix B: ``-1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``."""
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f'gaussian_kl: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} '
                         f'must both be B x latent_dim')
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


@MODELS.register_module()
class ELBOLoss(nn.Module):
    """``-ELBO = -E_q[log p(x | z)] + KL(q(z | x) || p(z))``, per sample, averaged over the
    batch, with one sample ``z`` of the posterior per image (the paper's ``L = 1``).

    Likelihoods ``p(x | z)`` of the decoder output ``x_hat`` (``D`` values per image):

    - ``'gaussian'``: ``N(x; x_hat, sigma^2 I)`` with a fixed ``sigma``:
      ``-log p = ||x - x_hat||^2 / (2 sigma^2) + D/2 log(2 pi sigma^2)``; any target range.
    - ``'bernoulli'``: ``x_hat`` are logits, targets in [0, 1]:
      ``-log p = sum BCE(x_hat, x)`` (the paper's MNIST decoder).

    Both use :class:`AEReconstructionLoss` (``reduction='sum'``).  :meth:`forward` returns
    ``loss_recon`` (``-E_q[log p(x | z)]``), ``loss_kl`` (``kl_weight * KL``, the weight for KL
    annealing), and, not back-propagated, ``kl`` (unweighted) and ``elbo`` (``-(recon + KL)``,
    the true bound in nats per image).

    Args:
        likelihood (str): ``'gaussian'`` or ``'bernoulli'``. Defaults to ``'gaussian'``.
        sigma (float): Standard deviation of the Gaussian likelihood (in the units of the
            targets), > 0. Defaults to 1.
    """

    LIKELIHOODS = ('gaussian', 'bernoulli')

    def __init__(self, likelihood: str = 'gaussian', sigma: float = 1.0) -> None:
        super().__init__()
        if likelihood not in self.LIKELIHOODS:
            raise ValueError(f'ELBOLoss: likelihood must be one of {self.LIKELIHOODS}, '
                             f'got {likelihood!r}')
        if not float(sigma) > 0:
            raise ValueError(f'ELBOLoss: sigma must be > 0, got {sigma!r}')
        self.likelihood = likelihood
        self.sigma = float(sigma)
        self.reconstruction = AEReconstructionLoss(
            loss_type='mse' if likelihood == 'gaussian' else 'bce', reduction='sum')

    def negative_log_likelihood(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``-log p(target | pred)`` per image, averaged over the batch."""
        nll = self.reconstruction(pred, target)
        if self.likelihood == 'gaussian':
            d = target[0].numel()
            nll = nll / (2 * self.sigma ** 2) + 0.5 * d * math.log(2 * math.pi * self.sigma ** 2)
        return nll

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mu: torch.Tensor,
                logvar: torch.Tensor, kl_weight: float = 1.0) -> Dict[str, torch.Tensor]:
        recon = self.negative_log_likelihood(pred, target)
        kl = gaussian_kl(mu, logvar).mean()
        return dict(loss_recon=recon, loss_kl=kl_weight * kl, kl=kl.detach(),
                    elbo=-(recon + kl).detach())

    def extra_repr(self) -> str:
        return f'likelihood={self.likelihood!r}, sigma={self.sigma}'
