"""Local Aggregation (Zhuang, Zhai & Yamins, ICCV 2019)."""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmpretrain.structures import DataSample

from mmssl_ext.models.algorithms.npid import NPID
from mmssl_ext.models.losses.local_agg_loss import local_aggregation_neighbours
from mmssl_ext.registry import MODELS


def check_num_clusters(owner: str, num_clusters, n: int, n_name: str, what: str) -> None:
    """``num_clusters``: a non-empty list of ints K, each in ``[2, n]``."""
    if isinstance(num_clusters, int) or not num_clusters:
        raise ValueError(f'{owner}: num_clusters must be a non-empty list of K (one per '
                         f'clustering), got {num_clusters!r}')
    for k in num_clusters:
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n:
            raise ValueError(f'{owner}: every K in num_clusters must be an int in '
                             f'[2, {n_name}={n}] ({what}), got {k!r}')


@MODELS.register_module()
class LocalAggregation(NPID):
    r"""Local Aggregation: pull an embedding towards its close neighbours in the memory bank.

    For a batch embedding ``v_i = normalize(neck(backbone(x_i)))``::

        B_i  = the k entries of the memory bank most similar to v_i     background (k = 4096)
        C_i  = entries sharing v_i's cluster in any of R k-means runs   close neighbours
        loss = -log(P(C_i & B_i | v_i) / P(B_i | v_i)),  P(j | v) ~ exp(v . m_j / tau)
        m_i <- normalize(mu * m_i + (1 - mu) * v_i)                   the NPID bank update

    The ``R`` k-means runs (``num_clusters``, one K per run; 10 x 30000 on ImageNet) cluster the
    memory bank itself and are refreshed by :class:`LocalAggregationHook` at the start of every
    epoch; their labels live in the buffer ``cluster_labels`` (``R x N``, ``-1`` = not clustered
    yet), so they are in every checkpoint.  Until the first clustering the model trains with
    NPID's instance-recognition loss (``loss``; the paper's warm start of 10 epochs).  This is
    :class:`NPID` plus the LA loss: the bank, its DDP update and the warm-up loss are NPID's.

    Args:
        backbone / neck / memory_bank / loss: as :class:`NPID` (``loss`` is the warm-up loss).
        num_clusters: K of each k-means run (``R = len(num_clusters)``), each ``<= N``.
        num_background: ``k``, the background neighbours per sample, ``<= N``.
        la_loss: :class:`LocalAggregationLoss` config (``temperature`` 0.07).
    """

    cluster_labels: torch.Tensor

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 memory_bank: dict,
                 num_clusters: Sequence[int] = (30000, ) * 10,
                 num_background: int = 4096,
                 loss: dict = dict(type='NCELoss', temperature=0.07),
                 la_loss: dict = dict(type='LocalAggregationLoss', temperature=0.07),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, memory_bank=memory_bank, loss=loss,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        n = self.memory_bank.length
        check_num_clusters('LocalAggregation', num_clusters, n, 'N', 'the memory bank length')
        if not 1 <= num_background <= n:
            raise ValueError(f'LocalAggregation: num_background={num_background} must be in '
                             f'[1, N={n}] (the memory bank length)')
        self.num_clusters: List[int] = [int(k) for k in num_clusters]
        self.num_background = int(num_background)
        self.la_loss = MODELS.build(la_loss)
        self.register_buffer('cluster_labels',
                             torch.full((len(self.num_clusters), n), -1, dtype=torch.long))

    @property
    def clustered(self) -> bool:
        return bool((self.cluster_labels >= 0).all())

    @torch.no_grad()
    def set_cluster_labels(self, labels: Union[torch.Tensor, Sequence]) -> None:
        """Write the labels of the ``R`` k-means runs (``R x N``, run ``r`` in ``[0, K_r)``)."""
        labels = torch.as_tensor(labels)
        if tuple(labels.shape) != tuple(self.cluster_labels.shape):
            raise ValueError(f'LocalAggregation: cluster labels of shape {tuple(labels.shape)}, '
                             f'expected {tuple(self.cluster_labels.shape)} (runs x N)')
        for r, k in enumerate(self.num_clusters):
            if int(labels[r].min()) < 0 or int(labels[r].max()) >= k:
                raise ValueError(f'LocalAggregation: labels of run {r} must be in [0, {k})')
        self.cluster_labels.copy_(labels.to(self.cluster_labels))

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        if not self.clustered:  # the instance-recognition warm start
            return super().loss(inputs, data_samples, **kwargs)
        img = self._single_view(inputs)
        idx = self._sample_indices(data_samples, img.device)
        if idx.numel() != img.shape[0]:
            raise ValueError(f'LocalAggregation: {img.shape[0]} images but {idx.numel()} '
                             f'data samples')
        v = self.embed(img)
        bank = self.memory_bank.feats
        with torch.no_grad():  # the neighbour sets; the bank is updated in place below
            back_idx, close = local_aggregation_neighbours(
                v.detach() @ bank.to(v.dtype).t(), idx, self.cluster_labels.to(idx.device),
                self.num_background)
        back_sims = torch.bmm(bank[back_idx].to(v.dtype), v.unsqueeze(2)).squeeze(2)
        loss = self.la_loss(back_sims, close)
        self.memory_bank.update(idx, v.detach())
        return dict(loss=loss, close_fraction=close.float().mean().detach())
