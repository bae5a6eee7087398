"""Hinton's knowledge-distillation loss: the distillation baseline of ClusterFit's control test.

The student is trained on the teacher's *soft* predictions instead of hard labels (Hinton, Vinyals,
Dean 2015, "Distilling the Knowledge in a Neural Network"); ClusterFit (Yan et al. 2020, Fig. 6)
compares this against its cluster-id targets.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class DistillationKLLoss(nn.Module):
    r"""Knowledge distillation: ``T^2 * KL(softmax(t / T) || softmax(s / T))``.

    .. math::

        \mathcal{L} = \frac{T^2}{B} \sum_{b=1}^{B} \sum_{c=1}^{C}
            p_{bc} \left(\log p_{bc} - \log \mathrm{softmax}(s_b / T)_c\right),
        \qquad p_b = \mathrm{softmax}(t_b / T)

    with student logits ``s``, teacher logits ``t`` and temperature ``T``.  The gradient is
    ``dL/ds_b = T (softmax(s_b / T) - p_b) / B``; for large ``T`` and zero-mean logits it tends to
    ``(s_b - t_b) / (C B)``, so the ``T^2`` factor keeps the gradient magnitude independent of
    ``T`` (Hinton et al., section 2.1: without it the soft-target gradients scale as ``1/T^2``).

    A drop-in ``loss`` of mmpretrain's ``ClsHead`` / ``LinearClsHead``: the head calls
    ``loss(cls_score, target, avg_factor=B)`` with ``target`` the stacked ``gt_score`` of the data
    samples (:class:`~mmssl_ext.datasets.SoftLabelDataset` serves them).  By default the targets
    are the teacher's *probabilities* ``p = softmax(t / T)``, already tempered with the same ``T``
    (what ``tools/clusterfit.py soft-targets`` writes); ``target_type='logits'`` takes raw teacher
    logits ``t`` instead.

    Args:
        temperature: ``T > 0``; must equal the temperature the soft targets were made with.
        target_type: ``'probs'`` (rows of ``p``, summing to 1) or ``'logits'`` (``t``).
        reduction: ``'mean'`` (per-sample KL averaged over the batch, or divided by
            ``avg_factor``), ``'sum'`` or ``'none'`` (``(B,)``).
        loss_weight: multiplier of the loss.

    Shapes:
        cls_score: ``(B, C)`` student logits.
        target: ``(B, C)`` teacher probabilities (or logits).
        weight: optional ``(B,)`` per-sample weights.

    Example:
        >>> loss_fn = DistillationKLLoss(temperature=4.0)
        >>> teacher_probs = (teacher_logits / 4.0).softmax(dim=1)
        >>> loss = loss_fn(student_logits, teacher_probs)
        >>> # in a config: model.head.loss = dict(type='DistillationKLLoss', temperature=4.0)
    """

    def __init__(self,
                 temperature: float = 1.0,
                 target_type: str = 'probs',
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f'temperature must be positive (got {temperature})')
        if target_type not in ('probs', 'logits'):
            raise ValueError(f"target_type must be 'probs' or 'logits', got {target_type!r}")
        if reduction not in ('mean', 'sum', 'none'):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.temperature = float(temperature)
        self.target_type = target_type
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def extra_repr(self) -> str:
        return (f'temperature={self.temperature}, target_type={self.target_type!r}, '
                f'reduction={self.reduction!r}, loss_weight={self.loss_weight}')

    def forward(self,
                cls_score: torch.Tensor,
                target: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> torch.Tensor:
        reduction = reduction_override or self.reduction
        if reduction not in ('mean', 'sum', 'none'):
            raise ValueError(f"reduction_override must be 'mean', 'sum' or 'none', got "
                             f'{reduction_override!r}')
        if cls_score.ndim != 2:
            raise ValueError(f'cls_score must be (B, C) logits, got shape '
                             f'{tuple(cls_score.shape)}')
        if target.ndim == 1 or (target.ndim == 2 and target.shape[1] == 1
                                and cls_score.shape[1] != 1):
            raise ValueError(
                f'DistillationKLLoss got hard labels (target shape {tuple(target.shape)}); it '
                f'needs (B, C) soft targets: train on SoftLabelDataset (gt_score per sample) '
                f'or use CrossEntropyLoss for class ids')
        if target.shape != cls_score.shape:
            raise ValueError(
                f'soft targets have shape {tuple(target.shape)} but cls_score '
                f'{tuple(cls_score.shape)}: the head must have as many classes as the soft '
                f'targets have columns (model.head.num_classes={target.shape[-1]})')
        t = self.temperature
        dtype = torch.promote_types(cls_score.dtype, torch.float32)  # half -> float32
        log_q = F.log_softmax(cls_score.to(dtype) / t, dim=1)
        if self.target_type == 'logits':
            log_p = F.log_softmax(target.to(dtype) / t, dim=1)
            p = log_p.exp()
            kl = (p * (log_p - log_q)).sum(dim=1)
        else:
            p = target.to(log_q.dtype)
            # xlogy: 0 * log 0 = 0 for classes the teacher gives no mass
            kl = (torch.xlogy(p, p) - p * log_q).sum(dim=1)
        loss = kl * (t * t)
        if weight is not None:
            if weight.shape != loss.shape:
                raise ValueError(f'weight must have shape {tuple(loss.shape)} (one per sample), '
                                 f'got {tuple(weight.shape)}')
            loss = loss * weight.to(loss.dtype)
        if reduction == 'mean':
            loss = loss.sum() / avg_factor if avg_factor is not None else loss.mean()
        elif reduction == 'sum':
            if avg_factor is not None:
                raise ValueError('avg_factor can not be used with reduction="sum"')
            loss = loss.sum()
        return self.loss_weight * loss
