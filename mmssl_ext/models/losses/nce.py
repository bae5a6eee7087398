"""Contrastive losses against memory-bank negatives: softmax InfoNCE and NPID's binary NCE.

Both take the similarity ``s+`` of each sample's embedding to its positive (for PIRL and NPID the
sample's own memory-bank entry ``m_I``) and the similarities ``s-`` to ``K`` negatives, and return
the mean over the batch.  Similarities are cosine similarities (dot products of L2-normalised
vectors), e.g. from :meth:`mmssl_ext.models.memories.MemoryBank.negative_similarities`.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_world_size

from mmssl_ext.registry import MODELS


def _check_pos_neg(pos: torch.Tensor, neg: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Check ``pos`` (``(B,)`` or ``(B, 1)``) and ``neg`` (``(B, K)``); return pos as ``(B,)``."""
    if pos.ndim == 2 and pos.shape[1] == 1:
        pos = pos.squeeze(1)
    if pos.ndim != 1:
        raise ValueError(f'pos must have shape (B,); got {tuple(pos.shape)}')
    if neg.ndim != 2:
        raise ValueError(f'neg must have shape (B, K); got {tuple(neg.shape)}')
    if pos.shape[0] != neg.shape[0]:
        raise ValueError(f'batch sizes differ: pos has {pos.shape[0]} rows, neg {neg.shape[0]}')
    if pos.shape[0] == 0 or neg.shape[1] == 0:
        raise ValueError(f'empty input: pos {tuple(pos.shape)}, neg {tuple(neg.shape)}')
    return pos, neg


@MODELS.register_module()
class InfoNCELoss(nn.Module):
    r"""Softmax InfoNCE over one positive and ``K`` negatives per sample.

    .. math::

        \mathcal{L} = -\frac{1}{B} \sum_{b=1}^{B} \log
            \frac{\exp(s^+_b / \tau)}
                 {\exp(s^+_b / \tau) + \sum_{k=1}^{K} \exp(s^-_{bk} / \tau)}

    computed stably as the cross-entropy of the logits ``[s+, s-_1, ..., s-_K] / tau`` with target
    class 0.  This is the "softmax" form of NPID / PIRL (VISSL's ``cross_entropy`` variant) and the
    loss of MoCo / CPC.

    Args:
        temperature: ``tau`` (0.07 in NPID / PIRL).

    Shapes:
        pos: ``(B,)`` similarities ``s+ = s(m_I, v)`` (``(B, 1)`` is accepted too).
        neg: ``(B, K)`` similarities ``s-`` to the negatives.
        output: scalar, the mean over the batch.

    Example:
        >>> loss_fn = InfoNCELoss(temperature=0.07)
        >>> v = F.normalize(torch.randn(8, 128), dim=1)           # embeddings
        >>> pos = (v * bank.get(idx)).sum(dim=1)                    # (8,)
        >>> neg = bank.negative_similarities(v, idx)                # (8, K)
        >>> loss = loss_fn(pos, neg)
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be positive (got {temperature})')
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f'temperature={self.temperature}'

    def forward(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        pos, neg = _check_pos_neg(pos, neg)
        logits = torch.cat([pos.unsqueeze(1), neg.to(pos.dtype)], dim=1) / self.temperature
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target)


@MODELS.register_module()
class NCELoss(nn.Module):
    r"""Binary noise-contrastive estimation of NPID (Wu et al. 2018), as used by PIRL / VISSL.

    The non-parametric softmax ``P(i | v) = exp(s_i / tau) / Z`` is learnt by telling the data
    sample (the positive) apart from ``K`` noise samples drawn from the uniform noise distribution
    ``P_n = 1 / |D|`` (``|D| = num_data``, the size of the training set).  With

    .. math::

        P(s) = \frac{\exp(s / \tau)}{Z}, \qquad
        h(s) = \frac{P(s)}{P(s) + K P_n},

    the loss is

    .. math::

        \mathcal{L} = -\frac{1}{B} \sum_{b=1}^{B} \Big[ \log h(s^+_b)
            + \sum_{k=1}^{K} \log\big(1 - h(s^-_{bk})\big) \Big].

    **Normalising constant.** ``Z`` is estimated ONCE, on the first call, with NPID's Monte-Carlo
    estimate ``Z = mean(exp(s / tau)) * |D|`` over all ``B * (K + 1)`` entries of ``pos`` and
    ``neg`` of that batch (no gradient), and then kept fixed in the buffer ``z`` (so it is saved in
    checkpoints and restored on resume; ``z <= 0`` means "not estimated yet").  Under DDP the mean
    is taken over the entries of ALL ranks (``all_reduce`` of the sum and the count), so every rank
    gets the same ``Z``; every rank must then make its first call in the same step.

    **Numerics.** As in lemniscate's and VISSL's ``NCECriterion``, ``eps`` is added to the
    denominator ``P + K P_n`` of both ``h(s+)`` and ``1 - h(s-) = K P_n / (P + K P_n)``, so the
    logs stay finite; the logs are evaluated in log space (``log P = s / tau - log Z``), which
    cannot overflow.

    Args:
        temperature: ``tau`` (0.07 in NPID / PIRL).
        num_data: ``|D|``, the number of training images (the memory-bank length).  Keyword only.
            PIRL, NPID and CMC pass their bank's length when it is unset (``None``), and the bank
            takes its length from the training set when the config leaves it unset; ``Z`` cannot
            be estimated while it is ``None``.
        eps: the small constant added to the denominators: ``1e-7`` as lemniscate.pytorch
            (NPID's official code); VISSL (PIRL) uses float32's machine epsilon, ``1.19e-7``.
            Next to ``K P_n`` (0.025 for PIRL's 32000 negatives over ImageNet) either is
            negligible.

    Shapes:
        pos: ``(B,)`` similarities ``s+ = s(m_I, v)`` (``(B, 1)`` is accepted too).
        neg: ``(B, K)`` similarities ``s-`` to ``K`` negatives.
        output: scalar, the mean over the batch.

    Example:
        >>> loss_fn = NCELoss(temperature=0.07, num_data=len(dataset))
        >>> pos = (v * bank.get(idx)).sum(dim=1)          # (B,)
        >>> neg = bank.negative_similarities(v, idx)      # (B, K)
        >>> loss = loss_fn(pos, neg)                      # first call fixes Z
        >>> float(loss_fn.z)
    """

    z: torch.Tensor

    def __init__(self, temperature: float = 0.07, *, num_data: Optional[int],
                 eps: float = 1e-7) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be positive (got {temperature})')
        if num_data is not None and (isinstance(num_data, bool) or not isinstance(num_data, int)
                                     or num_data < 1):
            raise ValueError(
                f'num_data must be a positive int, the dataset size (got {num_data!r})')
        if eps < 0:
            raise ValueError(f'eps must be >= 0 (got {eps})')
        self.temperature = float(temperature)
        self.num_data = num_data
        self.eps = float(eps)
        self.register_buffer('z', torch.tensor(-1.0))

    def extra_repr(self) -> str:
        return f'temperature={self.temperature}, num_data={self.num_data}, eps={self.eps}'

    @property
    def z_initialized(self) -> bool:
        """Whether ``Z`` has been estimated (or loaded from a checkpoint)."""
        return bool(self.z > 0)

    @torch.no_grad()
    def _estimate_z(self, pos: torch.Tensor, neg: torch.Tensor) -> None:
        """Set ``z`` to NPID's estimate ``mean(exp(s / tau)) * |D|`` (averaged over all ranks)."""
        if self.num_data is None:
            raise RuntimeError('NCELoss: num_data (|D|, the training set size) is unset, so Z '
                               'cannot be estimated; set it, or the memory bank length it '
                               'follows, to the training set size (SSLRunner does so)')
        e_pos = torch.exp(pos.detach().double() / self.temperature)
        e_neg = torch.exp(neg.detach().double() / self.temperature)
        stats = torch.stack([e_pos.sum() + e_neg.sum(),
                             torch.tensor(float(e_pos.numel() + e_neg.numel()),
                                          dtype=torch.float64, device=e_pos.device)])
        if get_world_size() > 1:
            all_reduce(stats, op='sum')
        z = float(stats[0] / stats[1]) * self.num_data
        if not math.isfinite(z) or z <= 0:
            raise FloatingPointError(
                f'NCE normalising constant Z={z} is not a positive finite number; are the '
                f'similarities finite and the temperature ({self.temperature}) sensible?')
        self.z.fill_(z)

    def forward(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        pos, neg = _check_pos_neg(pos, neg)
        neg = neg.to(pos.dtype)
        if not self.z_initialized:
            self._estimate_z(pos, neg)
        k = neg.shape[1]
        log_z = torch.log(self.z.to(torch.float64)).to(pos.dtype)
        log_kpn = math.log(k / self.num_data)  # log(K * P_n)
        log_eps = math.log(self.eps) if self.eps > 0 else -math.inf

        def log_denominator(log_p: torch.Tensor) -> torch.Tensor:
            """log(P + K * P_n + eps)"""
            log_d = torch.logaddexp(log_p, torch.full_like(log_p, log_kpn))
            return torch.logaddexp(log_d, torch.full_like(log_d, log_eps))

        log_p_pos = pos / self.temperature - log_z
        log_p_neg = neg / self.temperature - log_z
        log_h_pos = log_p_pos - log_denominator(log_p_pos)           # log h(s+)
        log_1m_h_neg = log_kpn - log_denominator(log_p_neg)          # log(1 - h(s-))
        return -(log_h_pos + log_1m_h_neg.sum(dim=1)).mean()
