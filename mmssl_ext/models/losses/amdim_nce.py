"""AMDIM's NCE critic between global / local embeddings, with its score penalty and clipping."""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn

from mmssl_ext.registry import MODELS


def tanh_clip(x: torch.Tensor, clip: Optional[float]) -> torch.Tensor:
    """Soft clipping to ``(-clip, clip)``: ``clip * tanh(x / clip)`` (identity for ``None``)."""
    return x if clip is None else clip * torch.tanh(x / clip)


@MODELS.register_module()
class AMDIMNCELoss(nn.Module):
    r"""The NCE loss of AMDIM (Bachman, Hjelm & Buchwalter, NeurIPS 2019) for one
    source -> target pair of layers.

    Sources ``s_n`` (``N x D``: a global vector, or one location of a local map, per image),
    targets ``t_{m,l}`` (``M x L x D``: the ``L`` locations of a local map of ``M`` images, the
    other view), and per source the index ``y_n`` of its own image among the ``M``::

        raw_{n,m,l} = <s_n, t_{m,l}> / sqrt(D)
        reg         = score_reg * mean_{n,m,l} raw_{n,m,l}^2           the score penalty
        f_{n,m,l}   = tclip * tanh(raw_{n,m,l} / tclip)                soft clipping
        nce         = -mean_{n,l} log( exp(f_{n,y_n,l}) /
                          (exp(f_{n,y_n,l}) + sum_{m != y_n} sum_{l'} exp(f_{n,m,l'})) )

    Each positive (the source's own image at location ``l``) is scored against the SAME
    negative set: every location of every other image; the other locations of the own image are
    neither positives of this term nor negatives.  This is the official code's
    ``NCE_MI_MULTI._model_scores`` (amdim-public, ``costs.py``): penalty weight 5e-2 on the
    unclipped scaled scores, ``tclip = 20`` in its ``train.py``.  Scores are computed in float32
    (the official code casts them too) so that mixed precision does not overflow ``exp``.

    Args:
        tclip: the clipping range (``None``: no clipping).
        score_reg: weight of the score penalty.

    Shapes: src ``(N, D)``, trg ``(M, L, D)``, pos_index ``(N,)`` long in ``[0, M)``; returns
    ``(nce, reg)``, two scalars.
    """

    def __init__(self, tclip: Optional[float] = 20.0, score_reg: float = 0.05) -> None:
        super().__init__()
        if tclip is not None and not float(tclip) > 0:
            raise ValueError(f'AMDIMNCELoss: tclip must be > 0 or None, got {tclip!r}')
        if not float(score_reg) >= 0:
            raise ValueError(f'AMDIMNCELoss: score_reg must be >= 0, got {score_reg!r}')
        self.tclip = None if tclip is None else float(tclip)
        self.score_reg = float(score_reg)

    def extra_repr(self) -> str:
        return f'tclip={self.tclip}, score_reg={self.score_reg}'

    def raw_scores(self, src: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
        """``N x M x L`` scaled dot products (before clipping)."""
        m, l, d = trg.shape
        raw = src.float() @ trg.float().reshape(m * l, d).t()
        return raw.view(-1, m, l) / math.sqrt(d)

    def forward(self, src: torch.Tensor, trg: torch.Tensor,
                pos_index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if src.ndim != 2 or trg.ndim != 3 or src.shape[1] != trg.shape[2]:
            raise ValueError(f'AMDIMNCELoss: src must be N x D and trg M x L x D with the same D, '
                             f'got {tuple(src.shape)} and {tuple(trg.shape)}')
        n, m = src.shape[0], trg.shape[0]
        if tuple(pos_index.shape) != (n, ):
            raise ValueError(f'AMDIMNCELoss: pos_index must have shape ({n},), got '
                             f'{tuple(pos_index.shape)}')
        if m < 2:
            raise ValueError(f'AMDIMNCELoss: the negatives are the other images of the batch; '
                             f'got {m} target image(s), need >= 2 (raise the batch size)')
        if bool((pos_index < 0).any() or (pos_index >= m).any()):
            raise IndexError(f'AMDIMNCELoss: pos_index out of range [0, {m})')
        raw = self.raw_scores(src, trg)
        reg = self.score_reg * raw.pow(2).mean()
        scores = tanh_clip(raw, self.tclip)
        rows = torch.arange(n, device=src.device)
        pos = scores[rows, pos_index]  # N x L
        is_pos = torch.zeros(n, m, 1, dtype=torch.bool, device=src.device)
        is_pos[rows, pos_index] = True
        neg_lse = scores.masked_fill(is_pos, float('-inf')).flatten(1).logsumexp(1, keepdim=True)
        log_prob = pos - torch.logaddexp(pos, neg_lse)
        return -log_prob.mean(), reg
