"""InfoNCE of predictions against a shared set of candidate vectors (CPC)."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class CPCInfoNCELoss(nn.Module):
    r"""InfoNCE where every prediction picks its positive out of ONE shared set of candidates.

    Predictions ``p_n`` (``N x D``), candidates ``t_m`` (``M x D``) and, per prediction, the index
    ``y_n`` of its positive among the candidates; every other candidate is a negative:

    .. math::

        \mathcal{L} = -\frac{1}{N} \sum_{n=1}^{N} \log
            \frac{\exp(\langle p_n, t_{y_n} \rangle / \tau)}
                 {\sum_{m=1}^{M} \exp(\langle p_n, t_m \rangle / \tau)}

    computed as the cross-entropy of the ``N x M`` logits ``p t^T / tau`` with targets ``y``.
    CPC (van den Oord et al. 2018; Henaff et al. 2020): ``p`` = the predictions ``W_k c_{r,col}``,
    ``t`` = the patch vectors of every location of every image of the batch, ``y`` = the location
    ``(r + k, col)`` of the same image.  CPC scores with the raw dot product (``tau = 1``,
    ``normalize=False``); ``normalize=True`` uses cosine similarities instead.

    Args:
        temperature: ``tau``.
        normalize: L2-normalise ``p`` and ``t`` first.

    Shapes:
        pred: ``(N, D)``; candidates: ``(M, D)``; pos_index: ``(N,)`` long in ``[0, M)``;
        output: scalar (mean over the predictions), or ``(N,)`` with ``reduction='none'``; with
        ``return_logits=True`` a tuple ``(loss, logits)`` (the ``N x M`` logits, e.g. for an
        accuracy without a second matmul).
    """

    def __init__(self, temperature: float = 1.0, normalize: bool = False) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f'CPCInfoNCELoss: temperature must be > 0, got {temperature}')
        self.temperature = float(temperature)
        self.normalize = bool(normalize)

    def extra_repr(self) -> str:
        return f'temperature={self.temperature}, normalize={self.normalize}'

    def logits(self, pred: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            pred, candidates = F.normalize(pred, dim=1), F.normalize(candidates, dim=1)
        return pred @ candidates.t() / self.temperature

    def forward(self, pred: torch.Tensor, candidates: torch.Tensor, pos_index: torch.Tensor,
                reduction: Optional[str] = 'mean', return_logits: bool = False
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        if pred.ndim != 2 or candidates.ndim != 2 or pred.shape[1] != candidates.shape[1]:
            raise ValueError('CPCInfoNCELoss: pred (N, D) and candidates (M, D) must be 2-D with '
                             f'the same D, got {tuple(pred.shape)} and {tuple(candidates.shape)}')
        if pos_index.shape != (pred.shape[0], ):
            raise ValueError(f'CPCInfoNCELoss: pos_index must have shape ({pred.shape[0]},), got '
                             f'{tuple(pos_index.shape)}')
        if pred.shape[0] == 0 or candidates.shape[0] < 2:
            raise ValueError(f'CPCInfoNCELoss: need predictions and >= 2 candidates, got '
                             f'{pred.shape[0]} and {candidates.shape[0]}')
        if bool((pos_index < 0).any() or (pos_index >= candidates.shape[0]).any()):
            raise IndexError(f'CPCInfoNCELoss: pos_index out of range [0, {candidates.shape[0]})')
        logits = self.logits(pred, candidates)
        loss = F.cross_entropy(logits, pos_index.long(), reduction=reduction or 'none')
        return (loss, logits) if return_logits else loss
