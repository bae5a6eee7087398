"""The reconstruction loss shared by the denoising, contractive and variational auto-encoders."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class AEReconstructionLoss(nn.Module):
    """Per-element reconstruction error of a decoder output ``pred`` against ``target``
    (both ``B x ...``), reduced over the elements and the batch.

    ``loss_type``:

    - ``'mse'``: ``(pred - target)^2``; targets in any range (e.g. normalised images).  Up to a
      factor and a constant, the negative log-likelihood of a Gaussian with fixed variance.
    - ``'bce'``: the cross-entropy ``-[t log s(pred) + (1 - t) log(1 - s(pred))]`` of targets
      ``t`` in [0, 1] (Vincent et al.'s loss for [0, 1] inputs; the Bernoulli likelihood);
      ``pred`` are logits (``s`` the sigmoid), computed stably with
      ``binary_cross_entropy_with_logits``.

    ``reduction``: ``'mean'`` over every element; ``'sum'`` over the elements of each sample,
    then the mean over the batch (a per-sample log-likelihood, as the ELBO needs).

    Args:
        loss_type (str): ``'mse'`` or ``'bce'``. Defaults to ``'mse'``.
        reduction (str): ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplies the loss. Defaults to 1.
    """

    LOSS_TYPES = ('mse', 'bce')
    REDUCTIONS = ('mean', 'sum')

    def __init__(self, loss_type: str = 'mse', reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if loss_type not in self.LOSS_TYPES:
            raise ValueError(f'AEReconstructionLoss: loss_type must be one of {self.LOSS_TYPES}, '
                             f'got {loss_type!r}')
        if reduction not in self.REDUCTIONS:
            raise ValueError(f'AEReconstructionLoss: reduction must be one of '
                             f'{self.REDUCTIONS}, got {reduction!r}')
        self.loss_type = loss_type
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unreduced error, the shape of ``pred``."""
        if pred.shape != target.shape:
            raise ValueError(f'AEReconstructionLoss: pred {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} differ in shape')
        if self.loss_type == 'mse':
            return (pred - target).pow(2)
        with torch.no_grad():
            lo, hi = target.min().item(), target.max().item()
        if lo < 0 or hi > 1:
            raise ValueError(f"AEReconstructionLoss: loss_type='bce' needs targets in [0, 1], "
                             f'got values in [{lo:.3g}, {hi:.3g}]; normalise the images to '
                             f'[0, 1] (data_preprocessor mean=[0, 0, 0], std=[255, 255, 255]) '
                             f"or use loss_type='mse'")
        return F.binary_cross_entropy_with_logits(pred, target, reduction='none')

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        err = self.elementwise(pred, target)
        if self.reduction == 'mean':
            loss = err.mean()
        else:
            loss = err.flatten(1).sum(1).mean()
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'loss_type={self.loss_type!r}, reduction={self.reduction!r}, '
                f'loss_weight={self.loss_weight}')
