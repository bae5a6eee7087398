"""The hinge GAN loss of BigBiGAN's joint discriminator (Donahue & Simonyan, NeurIPS 2019)."""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class GANHingeLoss(nn.Module):
    r"""Hinge loss over named discriminator score terms (BigBiGAN: ``x``, ``z``, ``xz``).

    A real pair is ``(x, E(x))`` (data, encoder), a fake pair ``(G(z), z)`` (generator, prior);
    ``s_k`` is the discriminator's score of term ``k`` (one number per pair), ``h(t) =
    max(0, 1 - t)`` and ``w_k`` the term's weight (1 in the paper)::

        discriminator:        loss_d_k  = w_k * (mean_real h(s_k) + mean_fake h(-s_k))
        generator + encoder:  loss_eg_k = w_k * (mean_real s_k - mean_fake s_k)

    The paper's ``L_D`` is ``sum_k loss_d_k`` and ``L_EG`` is ``sum_k loss_eg_k``: the encoder
    lowers the real pairs' scores and the generator raises the fake pairs' (the scores themselves,
    not a hinge: the paper's ``l_EG(x, z, y) = y (s_x + s_z + s_xz)``).  A weight of 0 drops a
    term (the paper's ablation without the unary ``s_x`` / ``s_z`` terms).

    Args:
        weights (dict, optional): ``{term: weight}``; defaults to
            ``dict(x=1.0, z=1.0, xz=1.0)``.  Every term the discriminator scores needs a weight.
    """

    def __init__(self, weights: Optional[Dict[str, float]] = None) -> None:
        super().__init__()
        weights = dict(x=1.0, z=1.0, xz=1.0) if weights is None else dict(weights)
        bad = {k: w for k, w in weights.items() if not isinstance(w, (int, float)) or w < 0}
        if not weights or bad:
            raise ValueError(f'GANHingeLoss: weights must map each score term to a number >= 0, '
                             f'got {weights!r}')
        self.weights = {k: float(w) for k, w in weights.items()}

    def _check(self, real: Dict[str, torch.Tensor], fake: Dict[str, torch.Tensor]) -> None:
        if set(real) != set(self.weights) or set(fake) != set(self.weights):
            raise ValueError(f'GANHingeLoss: the discriminator scored terms {sorted(real)} '
                             f'(real) and {sorted(fake)} (fake), the loss weighs '
                             f'{sorted(self.weights)}; set loss.weights to one weight per term')

    def discriminator(self, real: Dict[str, torch.Tensor],
                      fake: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``{'loss_d_<k>': ...}``: the discriminator's hinge terms (minimised by D)."""
        self._check(real, fake)
        return {f'loss_d_{k}': w * (F.relu(1 - real[k]).mean() + F.relu(1 + fake[k]).mean())
                for k, w in self.weights.items()}

    def generator(self, real: Dict[str, torch.Tensor],
                  fake: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``{'loss_eg_<k>': ...}``: the encoder's and generator's terms (minimised by E, G)."""
        self._check(real, fake)
        return {f'loss_eg_{k}': w * (real[k].mean() - fake[k].mean())
                for k, w in self.weights.items()}
