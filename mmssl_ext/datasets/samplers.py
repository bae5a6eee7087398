"""``ClusterUniformSampler``: DeepCluster's uniform sampling over pseudo classes.

DeepCluster (Caron et al. 2018, Sec. 3.3) trains a classifier on k-means pseudo labels whose
clusters are very unbalanced; to keep the network from collapsing onto a few big clusters it
"samples images based on a uniform distribution over the classes, or pseudo-labels".  The original
``UnifLabelSampler`` draws ``N / K + 1`` images per cluster and truncates to ``N``; this sampler
draws exactly as many images per epoch as a plain sampler would, split over the non-empty clusters
as evenly as possible (counts differ by at most one between clusters).
"""
import math
from typing import Iterator, Optional, Sequence, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmssl_ext.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class ClusterUniformSampler(Sampler):
    """Sample uniformly over clusters (pseudo labels); DDP-aware, deterministic per epoch.

    Every epoch a global list of ``total_size`` dataset indices is drawn from a generator seeded
    with ``seed + epoch`` (identical on every rank), and rank ``r`` of ``W`` takes the positions
    ``r, r + W, r + 2W, ...`` of it, exactly as mmengine's ``DefaultSampler`` shards.  The global
    list is built as follows, with ``C`` the number of non-empty clusters:

    * every cluster gets ``total_size // C`` draws, and ``total_size % C`` clusters drawn at
      random get one more, so per-cluster counts differ by at most one;
    * a cluster's draws go through random permutations of its members (all members once before any
      member twice; a cluster larger than its share contributes a random subset);
    * the list is shuffled.

    Until :meth:`set_labels` is called (``DeepClusterHook`` does it before the first epoch, after
    every re-clustering and after a resume) the sampler behaves like ``DefaultSampler`` with
    ``shuffle=True``.  The labels are read when an epoch's iterator is created, so new labels take
    effect from the next epoch on.

    Args:
        dataset: the training dataset (only its length is used).
        seed: base seed; ``None`` draws one and synchronises it across ranks (as
            ``DefaultSampler``).
        round_up: pad the epoch to a multiple of the world size (``DefaultSampler``'s default),
            so every rank gets ``ceil(N / W)`` indices.
    """

    def __init__(self, dataset: Sized, seed: Optional[int] = None, round_up: bool = True) -> None:
        rank, world_size = get_dist_info()
        self.rank = rank
        self.world_size = world_size
        self.dataset = dataset
        self.num_data = len(dataset)
        if self.num_data < 1:
            raise ValueError('ClusterUniformSampler: the dataset is empty')
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0
        self.round_up = round_up
        if round_up:
            self.num_samples = math.ceil(self.num_data / world_size)
            self.total_size = self.num_samples * world_size
        else:
            self.num_samples = math.ceil((self.num_data - rank) / world_size)
            self.total_size = self.num_data
        self.labels: Optional[torch.Tensor] = None

    def set_labels(self, labels: Sequence[int]) -> None:
        """Use these cluster labels (one per dataset index, ``>= 0``) from the next epoch on."""
        labels = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor)
                                            else labels)).reshape(-1)
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f'ClusterUniformSampler: labels must be integers, got {labels.dtype}')
        if labels.numel() != self.num_data:
            raise ValueError(f'ClusterUniformSampler: got {labels.numel()} labels for a dataset '
                             f'of {self.num_data} samples')
        if bool((labels < 0).any()):
            bad = int(torch.nonzero(labels < 0)[0])
            raise ValueError(f'ClusterUniformSampler: labels must be >= 0 (sample {bad} has '
                             f'label {int(labels[bad])}: not clustered yet?)')
        self.labels = labels.to(torch.long).clone()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_indices(self) -> torch.Tensor:
        """The epoch's list of ``total_size`` indices before sharding (same on every rank)."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        n, total = self.num_data, self.total_size
        if self.labels is None:
            perm = torch.randperm(n, generator=g)
            reps = math.ceil(total / n)
            return perm.repeat(reps)[:total]
        order = torch.argsort(self.labels, stable=True)
        clusters, sizes = torch.unique(self.labels[order], return_counts=True)
        num = len(clusters)
        counts = torch.full((num, ), total // num, dtype=torch.long)
        counts[torch.randperm(num, generator=g)[:total % num]] += 1
        parts = []
        start = 0
        for size, count in zip(sizes.tolist(), counts.tolist()):
            members = order[start:start + size]
            start += size
            full, rest = divmod(count, size)
            for _ in range(full):
                parts.append(members[torch.randperm(size, generator=g)])
            if rest:
                parts.append(members[torch.randperm(size, generator=g)[:rest]])
        indices = torch.cat(parts)
        return indices[torch.randperm(total, generator=g)]

    def __iter__(self) -> Iterator[int]:
        indices = self.global_indices()[self.rank:self.total_size:self.world_size]
        return iter(indices.tolist())

    def __len__(self) -> int:
        return self.num_samples
