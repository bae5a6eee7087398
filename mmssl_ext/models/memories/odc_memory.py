"""The memory of Online Deep Clustering (Zhan et al., CVPR 2020): features, labels, centroids.

ODC replaces DeepCluster's epoch-wise global k-means by small online steps.  It keeps

* a **samples memory**: one L2-normalised feature per training image, EMA-updated from the
  batch's features (this is :class:`~mmssl_ext.models.memories.MemoryBank`: same update, same
  DDP all-gather, same handling of duplicate indices), plus the image's cluster **label**;
* a **centroids memory**: the mean feature of every cluster.

Each iteration, after the batch's features entered the samples memory, the batch's samples are
re-assigned to their nearest centroid and the centroids of every cluster the batch touched (old and
new labels) are recomputed as the mean of their members' memory features.  Small clusters are
dissolved and re-created by splitting the largest cluster
(:meth:`ODCMemory.deal_with_small_clusters`, called by ``ODCHook``), so no cluster stays empty.
Everything is a buffer: checkpointed, restored on resume.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.dist import broadcast, get_world_size

from mmssl_ext.registry import MODELS
from .data_sized import unset_size_error
from .memory_bank import MemoryBank


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared L2; ties go to the lower index) of every row."""
    d = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.t() + (centroids * centroids).sum(1)
    return d.argmin(dim=1)


@MODELS.register_module()
class ODCMemory(MemoryBank):
    r"""Samples memory (features + labels) and centroids memory of ODC.

    Update with a batch (indices ``I``, features ``f_i``), all-gathered over the ranks first::

        m_i <- normalize(mu * m_i + (1 - mu) * normalize(f_i))            (MemoryBank.update)
        y_i <- argmin_k ||m_i - c_k||^2                                   (label re-assignment)
        c_k <- mean{m_j : y_j = k}   for every k in {old y_i} u {new y_i}  (centroid update)

    (the original code re-assigns with the dot product ``argmax_k <m_i, c_k>``, which favours
    tight clusters; this is the nearest centroid the paper describes.)  A centroid whose
    cluster lost all its members keeps its last value until :meth:`deal_with_small_clusters`
    re-seeds it.

    Small clusters (:meth:`deal_with_small_clusters`, every iteration by default): every cluster
    with fewer than ``min_cluster_size`` members is dissolved: its members join the nearest
    cluster that is not small; then every empty cluster is re-created by splitting the currently
    largest cluster in two (2-means on its members' features, started from its centroid and its
    member farthest from it; the half around that member becomes the empty cluster).  As long as
    ``num_classes <= length`` no cluster is left empty.

    **DDP.** Indices and features are all-gathered (``MemoryBank``), so every rank applies the
    same updates; the recomputed centroid rows are broadcast from rank 0 (sums with atomics on the
    GPU are not bit-reproducible), so every rank keeps the same labels and centroids.

    Args:
        length: number of training images ``N``; left unset (``None``) in a config, ``SSLRunner``
            sets it from the training set (see :class:`MemoryBank`).
        feat_dim: feature dimension ``D`` (the neck's output, 256 in ODC).
        momentum: EMA coefficient ``mu`` of the old entry (0.5 in ODC).
        num_classes: number of clusters ``K`` (10000 for ImageNet), ``2 <= K <= N``.
        min_cluster_size: clusters below this size are dissolved (20 in ODC).
        split_iters: Lloyd iterations of the 2-means that splits the largest cluster.
    """

    labels: torch.Tensor
    centroids: torch.Tensor
    SIZED_BUFFERS = ('feats', 'labels')

    def __init__(self,
                 length: Optional[int] = None,
                 feat_dim: int = 256,
                 momentum: float = 0.5,
                 num_classes: int = 10000,
                 min_cluster_size: int = 20,
                 split_iters: int = 10) -> None:
        super().__init__(length=None, feat_dim=feat_dim, momentum=momentum, num_negatives=1)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f'ODCMemory: num_classes must be an int >= 2, got {num_classes!r}')
        if min_cluster_size < 0:
            raise ValueError(f'ODCMemory: min_cluster_size must be >= 0, got {min_cluster_size}')
        if split_iters < 0:
            raise ValueError(f'ODCMemory: split_iters must be >= 0, got {split_iters}')
        self.num_classes = int(num_classes)
        self.min_cluster_size = int(min_cluster_size)
        self.split_iters = int(split_iters)
        self.register_buffer('labels', torch.empty(0, dtype=torch.long))
        self.register_buffer('centroids', torch.zeros(self.num_classes, self.feat_dim))
        self._gathered_idx: Optional[torch.Tensor] = None
        if length is not None:
            self.allocate_rows(length)

    def allocate_rows(self, n: int, fill: bool = True) -> None:
        """``n`` samples: features as :class:`MemoryBank`, every label ``-1`` (unassigned)."""
        if self.num_classes > n:
            raise ValueError(f'ODCMemory: K={self.num_classes} clusters (num_classes) > N={n} '
                             f'samples (length); every cluster needs a member')
        super().allocate_rows(n, fill=fill)
        self.register_buffer('labels', torch.full((self.length, ), -1, dtype=torch.long,
                                                  device=self.labels.device))

    def extra_repr(self) -> str:
        return (f'length={self.length}, feat_dim={self.feat_dim}, momentum={self.momentum}, '
                f'num_classes={self.num_classes}, min_cluster_size={self.min_cluster_size}')

    @property
    def initialized(self) -> bool:
        """Whether every sample has a label (set by :meth:`init_memory` or a checkpoint)."""
        return self.length is not None and bool((self.labels >= 0).all())

    def cluster_sizes(self) -> torch.Tensor:
        """Members per cluster (``K`` long ints)."""
        return torch.bincount(self.labels.clamp(min=0), minlength=self.num_classes)

    # ------------------------------------------------------------------ init

    @torch.no_grad()
    def init_memory(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Start from the features of the whole training set and their k-means labels.

        Under DDP rank 0's features and labels are broadcast (the hook clusters on rank 0).
        """
        if self.length is None:
            raise unset_size_error('ODCMemory', 'length')
        feats = torch.as_tensor(feats)
        labels = torch.as_tensor(labels).reshape(-1)
        if feats.shape != (self.length, self.feat_dim):
            raise ValueError(f'ODCMemory.init_memory: features must have shape '
                             f'({self.length}, {self.feat_dim}) (length, feat_dim), got '
                             f'{tuple(feats.shape)}')
        if labels.numel() != self.length:
            raise ValueError(f'ODCMemory.init_memory: {labels.numel()} labels for length '
                             f'{self.length}')
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise ValueError(f'ODCMemory.init_memory: labels must be in [0, {self.num_classes}), '
                             f'got [{int(labels.min())}, {int(labels.max())}]')
        self.feats.copy_(F.normalize(feats.to(self.feats), dim=1))
        self.labels.copy_(labels.to(self.labels))
        if get_world_size() > 1:
            broadcast(self.feats, src=0)
            broadcast(self.labels, src=0)
        self._ranks_synced = True
        self.recompute_centroids()

    # ------------------------------------------------------------------ centroids

    @torch.no_grad()
    def recompute_centroids(self, clusters: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Set ``centroids[k]`` to the mean memory feature of cluster ``k``, for ``k`` in
        ``clusters`` (default: all); empty clusters keep their centroid.  Returns the ids."""
        if clusters is None:
            clusters = torch.arange(self.num_classes, device=self.labels.device)
        clusters = torch.unique(clusters.to(self.labels.device, torch.long))
        if clusters.numel() == 0:
            return clusters
        if clusters.numel() == self.num_classes:
            rows = torch.arange(self.length, device=self.labels.device)
        else:
            rows = torch.nonzero(torch.isin(self.labels, clusters)).flatten()
        pos = torch.searchsorted(clusters, self.labels[rows])
        sums = self.centroids.new_zeros(clusters.numel(), self.feat_dim)
        sums.index_add_(0, pos, self.feats[rows].to(sums.dtype))
        counts = torch.bincount(pos, minlength=clusters.numel())
        new = self.centroids[clusters].clone()
        nonempty = counts > 0
        new[nonempty] = sums[nonempty] / counts[nonempty].unsqueeze(1).to(sums.dtype)
        if get_world_size() > 1:
            broadcast(new, src=0)
        self.centroids[clusters] = new
        return clusters

    # ------------------------------------------------------------------ online update

    def _gather(self, idx: torch.Tensor, feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """MemoryBank's all-gather, remembering the gathered indices for the label update."""
        idx, feats = MemoryBank._gather(idx, feats)
        self._gathered_idx = idx
        return idx, feats

    @torch.no_grad()
    def update(self, idx: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """EMA-update the batch's features, re-assign their labels, update the touched centroids.

        Every rank must call it (it all-gathers).  Returns the fraction of the (gathered, distinct)
        samples whose label changed, a 0-d tensor.
        """
        if not self.initialized:
            raise RuntimeError('ODCMemory: update before init_memory; add '
                               "dict(type='ODCHook', ...) to custom_hooks (it initialises the "
                               'memory with a k-means of the whole training set)')
        self._gathered_idx = None
        super().update(idx, feats)
        all_idx = self._gathered_idx if self._gathered_idx is not None else self._check_idx(idx)
        uniq = torch.unique(all_idx)
        if uniq.numel() == 0:
            return self.centroids.new_zeros(())
        old = self.labels[uniq]
        new = nearest_centroid(self.feats[uniq], self.centroids)
        self.labels[uniq] = new
        self.recompute_centroids(torch.cat([old, new]))
        return (old != new).float().mean()

    # ------------------------------------------------------------------ small clusters

    def _split(self, members: torch.Tensor) -> torch.Tensor:
        """2-means of the members' features; mask of the half that leaves (never all, never none).
        """
        x = self.feats[members]
        c0 = x.mean(0)
        d0 = ((x - c0) ** 2).sum(1)
        far = int(d0.argmax())
        c1 = x[far]
        leave = ((x - c1) ** 2).sum(1) < d0
        leave[far] = True
        for _ in range(self.split_iters):
            if leave.all() or not leave.any():
                break
            c0, c1 = x[~leave].mean(0), x[leave].mean(0)
            new = ((x - c1) ** 2).sum(1) < ((x - c0) ** 2).sum(1)
            if torch.equal(new, leave):
                break
            leave = new
        if not leave.any():
            leave[far] = True
        if leave.all():
            leave[int(((x - c1) ** 2).sum(1).argmax())] = False
        return leave

    @torch.no_grad()
    def deal_with_small_clusters(self) -> int:
        """Dissolve clusters smaller than ``min_cluster_size`` and refill empty clusters by
        splitting the largest one.  Returns the number of samples whose label changed."""
        if not self.initialized:
            return 0
        sizes = self.cluster_sizes()
        small = torch.nonzero(sizes < self.min_cluster_size).flatten()
        if small.numel() == 0:
            return 0
        before = self.labels.clone()
        large = torch.nonzero(sizes >= self.min_cluster_size).flatten()
        if large.numel():
            rows = torch.nonzero(torch.isin(self.labels, small)).flatten()
            if rows.numel():
                targets = large[nearest_centroid(self.feats[rows], self.centroids[large])]
                self.labels[rows] = targets
                self.recompute_centroids(targets)
        for s in torch.nonzero(self.cluster_sizes() == 0).flatten().tolist():
            sizes = self.cluster_sizes()
            c = int(sizes.argmax())
            if int(sizes[c]) < 2:  # only when K > N, which __init__ rules out
                break
            members = torch.nonzero(self.labels == c).flatten()
            leave = self._split(members)
            self.labels[members[leave]] = s
            self.recompute_centroids(torch.tensor([c, s], device=self.labels.device))
        return int((self.labels != before).sum())


def odc_class_weights(sizes: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """ODC's loss re-weighting: ``w_k ∝ size_k ** -power`` (``1 / sqrt(size)`` by default),
    normalised to mean 1 over the non-empty clusters; empty clusters get 0."""
    sizes = sizes.to(torch.float32)
    w = torch.where(sizes > 0, sizes.clamp(min=1) ** (-power), torch.zeros_like(sizes))
    nonempty = int((sizes > 0).sum())
    return w * (nonempty / w.sum()) if math.isfinite(float(w.sum())) and nonempty else w
