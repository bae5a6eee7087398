"""Local Aggregation's neighbour sets and loss (Zhuang, Zhai & Yamins, ICCV 2019)."""
from typing import Tuple

import torch
import torch.nn as nn

from mmssl_ext.registry import MODELS


@torch.no_grad()
def local_aggregation_neighbours(sims: torch.Tensor, idx: torch.Tensor,
                                 cluster_labels: torch.Tensor,
                                 num_background: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Background and close neighbours of a batch, as the official ``get_LA_loss``.

    Args:
        sims: ``(B, N)`` dot products of the batch embeddings with every memory-bank entry.
        idx: ``(B,)`` dataset indices of the batch.
        cluster_labels: ``(R, N)`` cluster id of every entry in each of ``R`` k-means runs.
        num_background: ``k``, the size of the background set.

    Returns:
        ``(back_idx, close)``: ``back_idx`` ``(B, k)`` the indices of the ``k`` entries most
        similar to each embedding (the background neighbours ``B_i``; the own entry among them
        when it is that close); ``close`` ``(B, k)`` bool, True where that background neighbour
        shares the sample's cluster in at least one run (``C_i`` restricted to ``B_i``).
    """
    if sims.ndim != 2 or cluster_labels.ndim != 2 or sims.shape[1] != cluster_labels.shape[1]:
        raise ValueError(f'local_aggregation_neighbours: sims (B, N) and cluster_labels (R, N) '
                         f'must agree on N, got {tuple(sims.shape)} and '
                         f'{tuple(cluster_labels.shape)}')
    if not 1 <= num_background <= sims.shape[1]:
        raise ValueError(f'local_aggregation_neighbours: num_background={num_background} must '
                         f'be in [1, N={sims.shape[1]}] (the memory bank length)')
    back_idx = sims.topk(num_background, dim=1).indices
    own = cluster_labels[:, idx]  # (R, B)
    close = (cluster_labels[:, back_idx] == own.unsqueeze(2)).any(dim=0)
    return back_idx, close


@MODELS.register_module()
class LocalAggregationLoss(nn.Module):
    r"""``L_i = -log(P(C_i \cap B_i | v_i) / P(B_i | v_i) + eps)``, averaged over the batch.

    With ``P(j | v) \propto exp(v . m_j / tau)`` over the memory bank, the ratio is the softmax
    mass of the close neighbours within the background set (the normaliser cancels), computed
    here with log-sum-exp: ``exp(lse_close - lse_back)``; ``eps = 1e-7`` as the official code.

    Args:
        temperature: ``tau`` (0.07).
        eps: added to the ratio before the log (a sample with no close neighbour in ``B_i``
            costs ``-log(eps)`` instead of infinity).
    """

    def __init__(self, temperature: float = 0.07, eps: float = 1e-7) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'LocalAggregationLoss: temperature must be positive, got '
                             f'{temperature}')
        self.temperature = float(temperature)
        self.eps = float(eps)

    def forward(self, back_sims: torch.Tensor, close: torch.Tensor) -> torch.Tensor:
        """``back_sims`` ``(B, k)`` similarities to the background neighbours, ``close``
        ``(B, k)`` bool mask of the close ones."""
        if back_sims.shape != close.shape:
            raise ValueError(f'LocalAggregationLoss: back_sims {tuple(back_sims.shape)} and '
                             f'close {tuple(close.shape)} differ in shape')
        logits = back_sims / self.temperature
        lse_back = torch.logsumexp(logits, dim=1)
        has_close = close.any(dim=1)
        # a row without close neighbours keeps all its terms (finite gradients) and is zeroed
        keep = close | ~has_close.unsqueeze(1)
        lse_close = torch.logsumexp(logits.masked_fill(~keep, float('-inf')), dim=1)
        ratio = torch.exp(lse_close - lse_back) * has_close.to(logits.dtype)
        return -torch.log(ratio + self.eps).mean()
