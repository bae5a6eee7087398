"""SeLa's clustering heads and its Sinkhorn-Knopp label assignment (Asano, Rupprecht & Vedaldi,
ICLR 2020)."""
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmssl_ext.registry import MODELS


@torch.no_grad()
def sela_sinkhorn(logits: torch.Tensor, lamb: float = 25.0, tol: float = 0.1, block: int = 10,
                  max_iters: int = 1000) -> Tuple[torch.Tensor, torch.Tensor, int, float]:
    r"""SeLa's pseudo labels: the equal-partition transport plan of ``softmax(logits)^lamb``.

    SeLa solves ``max_Q <Q, log P> + 1/lamb H(Q)`` over ``Q`` with sample marginals ``1/N`` and
    cluster marginals ``1/K``; the solution is ``Q = diag(c) P^lamb diag(r)``, found by
    Sinkhorn-Knopp.  This is the scaling mmpretrain's SwAV ``distributed_sinkhorn`` computes
    for ``exp(out / epsilon)`` with ``out = log_softmax(logits)`` and ``epsilon = 1 / lamb``
    (``tests/models/test_sela.py`` checks that both give the same plan), written as the
    official ``optimize_L_sk``: two matrix-vector products per iteration on the scaling vectors
    ``r`` (``K``) and ``c`` (``N``) instead of rewriting the ``N x K`` matrix four times, which
    matters for a whole training set.  It stops when the cluster marginals of the plan are
    within ``tol`` (summed relative error) of ``N / K``, checked every ``block`` iterations,
    in float64 as the official code.  The rows of ``P^lamb`` are scaled to a maximum of 1
    first (a per-sample factor ``c`` absorbs), so that few entries underflow.

    Args:
        logits: ``N x K`` head outputs of the whole training set.
        lamb: ``lambda`` (25).  tol: stopping error (0.1).  block: iterations between checks.
        max_iters: bound on the iterations; reaching it returns the plan as it is (its error
            is returned: the caller warns), a near-equal partition rather than a stopped run.

    Returns:
        ``(labels N, Q N x K with rows summing to 1, iterations, error)``;
        ``labels = argmax_k Q``; ``error <= tol`` unless ``max_iters`` was reached.

    Raises:
        ValueError: ``K > N``.
    """
    n, k = logits.shape
    if k > n:
        raise ValueError(f'sela_sinkhorn: K={k} clusters > N={n} samples; the equal partition '
                         f'needs K <= N')
    log_p = F.log_softmax(logits.double(), dim=1) * lamb
    p = torch.exp(log_p - log_p.max(dim=1, keepdim=True).values)  # N x K, row max 1
    r = p.new_full((k, ), 1.0 / k)
    iters = 0
    while True:
        for _ in range(block):
            c = (1.0 / n) / (p @ r)  # N: every sample's mass 1 / N
            r = (1.0 / k) / (c @ p)  # K: every cluster's mass 1 / K
        iters += block
        c = (1.0 / n) / (p @ r)  # the sample marginals exact, the cluster ones checked
        err = float(((c @ p) * r * k - 1).abs().sum())
        if err <= tol or iters >= max_iters:
            q = p * r * (c * n).unsqueeze(1)  # rows sum to 1
            return q.argmax(dim=1), q, iters, err


@MODELS.register_module()
class SeLaHead(nn.Module):
    """``num_heads`` linear classifiers over ``num_classes`` pseudo classes each; the loss is
    the mean over heads of the cross-entropy with each head's pseudo labels.

    Args:
        in_channels: pooled feature size.  num_classes: ``K`` per head (3000 on ImageNet).
        num_heads: the number of clusterings (10 on ImageNet).
    """

    def __init__(self, in_channels: int, num_classes: int, num_heads: int = 1) -> None:
        super().__init__()
        if num_heads < 1 or num_classes < 2:
            raise ValueError(f'SeLaHead: num_heads >= 1 and num_classes >= 2 needed, got '
                             f'{num_heads} and {num_classes}')
        self.num_classes = int(num_classes)
        self.num_heads = int(num_heads)
        self.fcs = nn.ModuleList(nn.Linear(in_channels, num_classes) for _ in range(num_heads))

    def forward(self, feats: torch.Tensor) -> List[torch.Tensor]:
        return [fc(feats) for fc in self.fcs]

    def loss(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``labels`` ``(num_heads, B)``."""
        return torch.stack([F.cross_entropy(logits, target)
                            for logits, target in zip(self(feats), labels)]).mean()
