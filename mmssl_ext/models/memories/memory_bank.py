"""A memory bank of one L2-normalised embedding per training image (NPID, PIRL, ODC).

Instance discrimination methods (NPID, Wu et al. 2018; PIRL, Misra & van der Maaten 2020) keep a
running average ``m_i`` of the embedding of every training image ``i`` and contrast a sample's
embedding against its own entry (the positive) and against entries of other images drawn from the
bank (the negatives).  This module is the ONE bank the methods of mmssl_ext share:

* storage: a registered buffer ``feats`` (``length x feat_dim``), so the bank is part of the
  model's ``state_dict``: saved in checkpoints, restored on resume, moved with ``model.to()``;
* update: an exponential moving average followed by re-normalisation, all-gathered under DDP so
  that every rank holds the identical bank;
* negatives: uniform sampling of bank rows, either one set shared by the whole batch (one matmul)
  or one set per sample (as VISSL does).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather, broadcast, get_world_size

from mmssl_ext.registry import MODELS
from .data_sized import DataSizedMixin, unset_size_error

_SAMPLING_MODES = ('shared', 'per_sample')


@MODELS.register_module()
class MemoryBank(DataSizedMixin, nn.Module):
    r"""Memory bank with an EMA update and uniform negative sampling.

    Every row ``m_i`` of the bank is the running embedding of training image ``i`` (its dataset
    index).  An update with batch embeddings ``f_i`` applies, without gradient,

    .. math::

        m_i \leftarrow \frac{\mu\, m_i + (1 - \mu)\, \hat f_i}
                            {\lVert \mu\, m_i + (1 - \mu)\, \hat f_i \rVert_2},
        \qquad \hat f_i = \frac{f_i}{\lVert f_i \rVert_2}

    with ``mu = momentum`` (0.5 in NPID / PIRL).  At construction the rows are drawn from a
    standard normal distribution (torch's global RNG, so ``torch.manual_seed`` makes the initial
    bank reproducible and identical on every rank) and L2-normalised.

    **DDP.** When ``torch.distributed`` is initialised with a world size > 1, :meth:`update` first
    all-gathers the indices and features of every rank (ranks may hold different batch sizes) and
    then applies the same update everywhere, so all ranks keep the same bank: the result equals a
    single-process update with the batches of rank 0, 1, ... concatenated.

    The initial bank depends on each rank's RNG state, which differs when ranks are seeded
    differently (mmengine's ``randomness=dict(diff_rank_seed=True)``), and DDP does not sync
    buffers when it wraps a model with ``broadcast_buffers=False`` (mmengine's default).  So the
    first :meth:`update` of a bank under DDP first broadcasts rank 0's bank: from then on (and in
    checkpoints) every rank holds the same bank whatever the seeds.

    **Duplicate indices.** When an index occurs several times in one (gathered) update, e.g. because
    ``DistributedSampler`` pads the last batch with repeated samples, the normalised features of all
    its occurrences are averaged and ONE EMA step is applied with that mean:
    ``m_i <- normalize(mu * m_i + (1 - mu) * mean_j normalize(f_j))``.  This is deterministic and
    rank-independent: the occurrences are summed in their order in the gathered batch (rank 0's
    first), which is the same on every rank, with ops free of atomics, so all ranks compute
    bit-identical entries (and mathematically the mean does not depend on the order at all).

    **Negatives.** :meth:`sample_negatives` draws ``K = num_negatives`` bank rows uniformly (with
    replacement, torch's global RNG, on the bank's device):

    * ``sampling='shared'`` (default): ONE set of ``K`` indices for the whole batch, returned as a
      ``(K, D)`` tensor, so the negative similarities of the batch are one ``(B, D) x (D, K)``
      matmul.  The indices of the batch itself are EXCLUDED: no sample of the batch meets its own
      entry (or the entry of another sample of the batch) among the negatives.  (NPID and VISSL do
      not exclude them; on a small dataset with many negatives the own entry would otherwise appear
      in the set for a large share of the samples.)  The batch must leave at least one index of the
      bank uncovered.
    * ``sampling='per_sample'`` (VISSL's form): ``B x K`` indices, row ``b`` drawn uniformly from
      all indices except the sample's own index ``idx[b]`` (other samples of the batch may appear),
      returned as a ``(B, K, D)`` tensor.  Memory grows as ``B * K * D``.

    Args:
        length: number of entries, i.e. the size of the training set (the largest dataset index
            plus one).  Left unset (``None``) in a config, ``SSLRunner`` sets it from the training
            set; an unsized bank built by hand takes the length of the first checkpoint loaded.
        feat_dim: embedding dimension ``D``.
        momentum: EMA coefficient ``mu`` of the OLD entry, in ``[0, 1]``.
        num_negatives: number ``K`` of negatives per sample; at most ``length - 1``.
        sampling: ``'shared'`` or ``'per_sample'``, see above.

    Raises:
        ValueError: at construction for ``num_negatives > length - 1``, a ``momentum`` outside
            ``[0, 1]`` or an unknown ``sampling``; on :meth:`update` for features of the wrong
            dimension or a batch size that differs from the number of indices.
        IndexError: for any index ``< 0`` or ``>= length`` (the message names the index and the
            bank length).

    Example:
        >>> bank = MemoryBank(length=50000, feat_dim=128, num_negatives=4096)
        >>> idx = torch.randint(0, 50000, (32,))           # dataset indices of the batch
        >>> feat = F.normalize(torch.randn(32, 128), dim=1)  # embeddings of the batch
        >>> pos = (bank.get(idx) * feat).sum(dim=1)         # (32,)   s(m_i, v_i)
        >>> neg = feat @ bank.sample_negatives(idx).t()     # (32, 4096)
        >>> # or, for either sampling mode: neg = bank.negative_similarities(feat, idx)
        >>> bank.update(idx, feat)                          # after the loss
    """

    feats: torch.Tensor
    SIZED_BUFFERS = ('feats', )

    def __init__(self,
                 length: Optional[int] = None,
                 feat_dim: int = 128,
                 momentum: float = 0.5,
                 num_negatives: int = 32000,
                 sampling: str = 'shared') -> None:
        super().__init__()
        if length is not None and length < 2:
            raise ValueError(f'a memory bank needs at least 2 entries (got length={length})')
        if feat_dim < 1:
            raise ValueError(f'feat_dim must be positive (got {feat_dim})')
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f'momentum must be in [0, 1] (got {momentum})')
        if num_negatives < 1:
            raise ValueError(f'num_negatives={num_negatives} must be at least 1')
        if sampling not in _SAMPLING_MODES:
            raise ValueError(f'sampling must be one of {_SAMPLING_MODES} (got {sampling!r})')
        self.length: Optional[int] = None
        self.feat_dim = int(feat_dim)
        self.momentum = float(momentum)
        self.num_negatives = int(num_negatives)
        self.sampling = sampling
        self._ranks_synced = False  # rank 0's bank broadcast yet (first update under DDP)?
        if length is None:  # unsized: SSLRunner or a checkpoint sets the length
            self.register_buffer('feats', torch.empty(0, self.feat_dim))
        else:
            self.allocate_rows(length)

    def allocate_rows(self, n: int, fill: bool = True) -> None:
        """Give the bank ``n`` entries (random unit vectors; uninitialised for ``fill=False``)."""
        n = int(n)
        if n < 2:
            raise ValueError(f'a memory bank needs at least 2 entries (got length={n})')
        if self.num_negatives > n - 1:
            raise ValueError(
                f'num_negatives={self.num_negatives} must be between 1 and length - 1 = {n - 1} '
                f'(a memory bank of length {n} holds {n - 1} negatives per sample)')
        self.length = n
        device = self.feats.device if hasattr(self, 'feats') else None
        feats = (F.normalize(torch.randn(n, self.feat_dim), dim=1) if fill else
                 torch.empty(n, self.feat_dim))
        self.register_buffer('feats', feats.to(device) if device is not None else feats)

    def extra_repr(self) -> str:
        return (f'length={self.length}, feat_dim={self.feat_dim}, momentum={self.momentum}, '
                f'num_negatives={self.num_negatives}, sampling={self.sampling!r}')

    # ------------------------------------------------------------------ checks

    def _check_idx(self, idx: torch.Tensor) -> torch.Tensor:
        """Validate dataset indices; return them as a flat long tensor on the bank's device."""
        if self.length is None:
            raise unset_size_error(type(self).__name__, 'length')
        if not isinstance(idx, torch.Tensor):
            idx = torch.as_tensor(idx)
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise TypeError(f'memory bank indices must be integers (got dtype {idx.dtype})')
        idx = idx.reshape(-1).to(device=self.feats.device, dtype=torch.long)
        if idx.numel():
            bad = (idx < 0) | (idx >= self.length)
            if bool(bad.any()):
                i = int(idx[bad][0])
                raise IndexError(
                    f'memory bank of length {self.length} is smaller than the dataset index {i}'
                    if i >= 0 else
                    f'negative dataset index {i} for a memory bank of length {self.length}')
        return idx

    def _check_feats(self, feats: torch.Tensor, n: int) -> None:
        if feats.ndim != 2 or feats.shape[1] != self.feat_dim:
            raise ValueError(f'expected features of shape (B, {self.feat_dim}); '
                             f'got {tuple(feats.shape)}')
        if feats.shape[0] != n:
            raise ValueError(f'{feats.shape[0]} features for {n} indices')

    # ------------------------------------------------------------------ access

    @torch.no_grad()
    def get(self, idx: torch.Tensor) -> torch.Tensor:
        """Return the entries ``m_i`` of the indices ``idx`` (``(B,)``) as a ``(B, D)`` copy."""
        return self.feats[self._check_idx(idx)].clone()

    @torch.no_grad()
    def update(self, idx: torch.Tensor, feats: torch.Tensor) -> None:
        """EMA-update the entries ``idx`` (``(B,)``) with the embeddings ``feats`` (``(B, D)``).

        ``feats`` need not be normalised (they are, before the average); they are detached.  Under
        DDP every rank must call this (it all-gathers); see the class docstring for the semantics
        of duplicate indices.
        """
        idx = self._check_idx(idx)
        self._check_feats(feats, idx.numel())
        feats = F.normalize(feats.detach().to(device=self.feats.device, dtype=self.feats.dtype),
                            dim=1)
        idx, feats = self._gather(idx, feats)
        if not self._ranks_synced and get_world_size() > 1:
            broadcast(self.feats, src=0)  # identical banks even from differently seeded ranks
            self._ranks_synced = True
        if idx.numel() == 0:
            return
        uniq, inverse = torch.unique(idx, return_inverse=True)
        if uniq.numel() < idx.numel():
            feats = self._mean_per_index(inverse, feats, uniq.numel())
            idx = uniq
        new = self.momentum * self.feats[idx] + (1.0 - self.momentum) * feats
        self.feats[idx] = F.normalize(new, dim=1)

    @staticmethod
    def _mean_per_index(inverse: torch.Tensor, feats: torch.Tensor, n: int) -> torch.Tensor:
        """Mean of the rows of ``feats`` per group ``inverse`` (``n`` groups), deterministically.

        The j-th occurrences of all groups are added in one vectorised step (within a step the
        targets are distinct, so no atomics are involved, unlike ``index_add_`` on CUDA); the
        occurrences are added in their order in the (gathered) batch.  Every rank therefore
        computes bit-identical means.
        """
        order = torch.sort(inverse, stable=True).indices
        grp = inverse[order]
        counts = torch.bincount(inverse, minlength=n)
        starts = torch.cumsum(counts, 0) - counts
        occurrence = torch.arange(grp.numel(), device=grp.device) - starts[grp]
        sums = feats.new_zeros(n, feats.shape[1])
        for j in range(int(counts.max())):
            sel = occurrence == j
            sums[grp[sel]] += feats[order[sel]]
        return sums / counts.unsqueeze(1).to(feats.dtype)

    @staticmethod
    def _gather(idx: torch.Tensor,
                feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """All-gather indices and features of all ranks (rank order); identity without DDP."""
        world_size = get_world_size()
        if world_size == 1:
            return idx, feats
        n = torch.tensor([idx.numel()], dtype=torch.long, device=idx.device)
        sizes = [int(s) for s in all_gather(n)]
        max_n = max(sizes)
        pad = max_n - idx.numel()
        if pad:
            idx = torch.cat([idx, idx.new_zeros(pad)])
            feats = torch.cat([feats, feats.new_zeros(pad, feats.shape[1])])
        all_idx = all_gather(idx.contiguous())
        all_feats = all_gather(feats.contiguous())
        return (torch.cat([t[:s] for t, s in zip(all_idx, sizes)]),
                torch.cat([t[:s] for t, s in zip(all_feats, sizes)]))

    # ------------------------------------------------------------------ negatives

    @torch.no_grad()
    def sample_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """Draw negative indices for the batch ``idx``: ``(K,)`` shared or ``(B, K)`` per sample.

        Uniform with replacement over the allowed indices (see the class docstring), from torch's
        global RNG on the bank's device.
        """
        idx = self._check_idx(idx)
        k, device = self.num_negatives, self.feats.device
        if self.sampling == 'per_sample':
            # uniform over the length - 1 indices != own: draw from [0, length - 1), skip own
            r = torch.randint(0, self.length - 1, (idx.numel(), k), device=device)
            return r + (r >= idx.unsqueeze(1)).long()
        excluded = torch.unique(idx)  # sorted
        n_allowed = self.length - excluded.numel()
        if n_allowed < 1:
            raise ValueError(
                f'cannot draw shared negatives: the batch covers all {self.length} entries of the '
                f'memory bank')
        # r-th allowed index = r + #{j : excluded[j] - j <= r}  (excluded[j] - j counts the
        # allowed indices below excluded[j])
        r = torch.randint(0, n_allowed, (k,), device=device)
        shifted = excluded - torch.arange(excluded.numel(), device=device)
        return r + torch.searchsorted(shifted, r, right=True)

    @torch.no_grad()
    def sample_negatives(
        self,
        idx: torch.Tensor,
        return_indices: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Bank entries of randomly drawn negatives for the batch ``idx`` (``(B,)``).

        Returns:
            ``(K, D)`` for ``sampling='shared'``, ``(B, K, D)`` for ``'per_sample'``; with
            ``return_indices=True`` a tuple ``(negatives, indices)`` with indices of shape
            ``(K,)`` / ``(B, K)``.
        """
        neg_idx = self.sample_indices(idx)
        negs = self.feats[neg_idx]
        return (negs, neg_idx) if return_indices else negs

    def negative_similarities(
        self,
        query: torch.Tensor,
        idx: torch.Tensor,
        return_indices: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Dot products ``s-`` (``(B, K)``) of ``query`` (``(B, D)``) with fresh negatives.

        A convenience over :meth:`sample_negatives` that works for both sampling modes (one matmul
        for ``'shared'``, a batched matmul for ``'per_sample'``).  Gradients flow into ``query``,
        not into the bank.  With ``return_indices=True`` also returns the negative indices.
        """
        if query.ndim != 2 or query.shape[1] != self.feat_dim:
            raise ValueError(f'expected queries of shape (B, {self.feat_dim}); '
                             f'got {tuple(query.shape)}')
        n_idx = torch.as_tensor(idx).numel()
        if query.shape[0] != n_idx:
            raise ValueError(f'{query.shape[0]} queries for {n_idx} indices')
        negs, neg_idx = self.sample_negatives(idx, return_indices=True)
        negs = negs.to(query.dtype)
        if self.sampling == 'shared':
            sims = query @ negs.t()
        else:
            sims = torch.bmm(negs, query.unsqueeze(2)).squeeze(2)
        return (sims, neg_idx) if return_indices else sims
