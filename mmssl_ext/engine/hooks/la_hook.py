"""Local Aggregation's clustering hook: R k-means runs over the memory bank, every epoch."""
import time
from typing import Optional

import torch

from mmssl_ext.engine.hooks.cluster_common import (ScheduledRefreshHook, check_sizes,
                                                   cluster_on_rank0, epoch_start_iters,
                                                   unwrap_model)
from mmssl_ext.registry import HOOKS


@HOOKS.register_module()
class LocalAggregationHook(ScheduledRefreshHook):
    """k-means of :class:`LocalAggregation`'s memory bank, as the official ``Kmeans``.

    At the start of epochs ``start_epoch, start_epoch + interval, ...`` (the official code: every
    epoch after the instance-recognition warm start) the bank (``N x 128``, rows already unit
    length) is clustered ``R`` times, run ``r`` with ``K_r = model.num_clusters[r]`` and faiss
    seed ``seed + r``, without PCA or re-normalisation; rank 0 clusters, the labels are
    broadcast (the bank is identical on every rank, see ``MemoryBank``), and written to the
    model's ``cluster_labels``.  Nothing is extracted: the bank is the clustered data.

    Args:
        start_epoch: first clustered epoch; before it the model trains with NPID's loss.
        interval: epochs between clusterings (1).
        niter: k-means iterations (20); seed: faiss seed of run 0 (1234 officially).
        max_points_per_centroid: faiss subsampling (``None``: faiss's default of 256 per
            centroid; the official code sets 10000000, i.e. none).
        gpu: faiss on the GPU (``'auto'``, ``True``, ``False``).
    """

    def __init__(self, start_epoch: int = 0, interval: int = 1, niter: int = 20,
                 seed: int = 1234, max_points_per_centroid: Optional[int] = None,
                 gpu='auto') -> None:
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f'LocalAggregationHook: start_epoch must be an int >= 0, got '
                             f'{start_epoch!r}')
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'LocalAggregationHook: interval must be an int >= 1, got '
                             f'{interval!r}')
        self.start_epoch = start_epoch
        self.interval = interval
        self.niter = niter
        self.seed = seed
        self.max_points_per_centroid = max_points_per_centroid
        self.gpu = gpu

    def _model(self, runner):
        model = unwrap_model(runner.model)
        if not hasattr(model, 'set_cluster_labels') or not hasattr(model, 'memory_bank'):
            raise TypeError(f'LocalAggregationHook needs a LocalAggregation model, got '
                            f'{type(model).__name__}')
        return model

    def refresh_iters(self, runner):
        model = self._model(runner)
        for k in model.num_clusters:
            check_sizes('LocalAggregationHook', model.memory_bank.length,
                        'model.memory_bank.length', k, 'model.num_clusters', runner)
        return epoch_start_iters(runner, self.start_epoch, self.interval)

    def refresh(self, runner, it: int) -> None:
        model = self._model(runner)
        t0 = time.perf_counter()
        bank = model.memory_bank.feats.detach().float().cpu()
        labels, sizes = [], []
        for r, k in enumerate(model.num_clusters):
            lab, summary = cluster_on_rank0(
                bank, k, niter=self.niter, seed=self.seed + r, l2_normalize=False,
                gpu=self.gpu, max_points_per_centroid=self.max_points_per_centroid)
            labels.append(lab)
            if summary is not None:
                sizes.append(f'{summary["min_size"]}-{summary["max_size"]}')
        model.set_cluster_labels(torch.stack(labels))
        if sizes:
            runner.logger.info(f'LocalAggregationHook: iteration {it}: {len(labels)} k-means '
                               f'runs of the bank (K={model.num_clusters}), cluster sizes '
                               f'{", ".join(sizes)} ({time.perf_counter() - t0:.1f} s)')
