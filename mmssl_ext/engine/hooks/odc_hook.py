"""ODC's hook: the memory's k-means initialisation and the small-cluster passes.

The extraction, rank-0 k-means and size checks it shares with :class:`DeepClusterHook` live in
:mod:`mmssl_ext.engine.hooks.cluster_common`.
"""
import time
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.hooks import Hook

from mmssl_ext.engine.hooks.cluster_common import (build_extraction_loader, check_pipeline,
                                                   check_sizes, cluster_on_rank0, unwrap_model)
from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.registry import HOOKS


class _Embedding(nn.Module):
    """``model.embed`` as a module, for :func:`extract_features`'s ``backbone`` argument."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = [model]  # not registered as a sub-module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model[0].embed(x)


@HOOKS.register_module()
class ODCHook(Hook):
    """ODC's memory initialisation and small-cluster handling.

    ``before_train`` (fresh runs only; a resumed run has its memory in the checkpoint): extract
    the model's embeddings ``z = neck(backbone(x))`` of the whole training set (pipeline
    ``pipeline``), L2-normalise, k-means them on rank 0 (faiss; no PCA by default, as mmselfsup's
    ODC), broadcast the labels and initialise the memory (features, labels, centroids as the
    mean feature per label), then dissolve small clusters.
    ``after_train_iter``: every ``small_cluster_interval`` iterations
    :meth:`~mmssl_ext.models.memories.ODCMemory.deal_with_small_clusters` (every iteration in
    ODC).  The memory's own update (EMA features, label re-assignment, centroids) happens in
    ``ODC.loss``.

    Args:
        pipeline: non-augmented feature-extraction pipeline.
        niter / seed / pca_dim / whiten / max_points_per_centroid / gpu: of the initial k-means.
        small_cluster_interval: iterations between small-cluster passes.
        batch_size / num_workers: of the extraction loader.
    """

    priority = 'NORMAL'

    def __init__(self,
                 pipeline: Sequence[dict],
                 niter: int = 20,
                 seed: int = 0,
                 pca_dim: Optional[int] = None,
                 whiten: bool = False,
                 max_points_per_centroid: Optional[int] = None,
                 small_cluster_interval: int = 1,
                 batch_size: int = 256,
                 num_workers: Optional[int] = None,
                 gpu='auto') -> None:
        self.pipeline = check_pipeline(pipeline, 'ODCHook')
        if small_cluster_interval < 1:
            raise ValueError(f'ODCHook: small_cluster_interval must be >= 1, got '
                             f'{small_cluster_interval}')
        self.niter = niter
        self.seed = seed
        self.pca_dim = pca_dim
        self.whiten = whiten
        self.max_points_per_centroid = max_points_per_centroid
        self.small_cluster_interval = small_cluster_interval
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.gpu = gpu
        self.initialized_here = False
        self.moved_samples = 0  # by deal_with_small_clusters, this process, this run

    def _model(self, runner):
        model = unwrap_model(runner.model)
        bank = getattr(model, 'memory_bank', None)
        if bank is None or not hasattr(bank, 'deal_with_small_clusters') or \
                not hasattr(model, 'embed'):
            raise TypeError(f'ODCHook needs an ODC model with an ODCMemory, got '
                            f'{type(model).__name__}')
        return model, bank

    def init_memory(self, runner) -> None:
        model, bank = self._model(runner)
        loader = build_extraction_loader(runner, self.pipeline, self.batch_size,
                                         self.num_workers)
        t0 = time.perf_counter()
        feats, _ = extract_features(runner.model, loader, backbone=_Embedding(model),
                                    normalize=True, progress=False)
        if feats.shape != (bank.length, bank.feat_dim):
            raise RuntimeError(f'ODCHook: extracted features of shape {tuple(feats.shape)}, the '
                               f'memory holds ({bank.length}, {bank.feat_dim})')
        pca_dim = None if self.pca_dim is None else min(int(self.pca_dim), feats.shape[1])
        labels, summary = cluster_on_rank0(
            feats, bank.num_classes, niter=self.niter, seed=self.seed, pca_dim=pca_dim,
            whiten=self.whiten and pca_dim is not None, l2_normalize=True, gpu=self.gpu,
            max_points_per_centroid=self.max_points_per_centroid)
        bank.init_memory(feats.to(bank.feats.device), labels.to(bank.labels.device))
        moved = bank.deal_with_small_clusters()
        self.initialized_here = True
        if summary is not None:
            sizes = bank.cluster_sizes()
            runner.logger.info(
                f'ODCHook: memory initialised by k-means: N={bank.length}, K={bank.num_classes}, '
                f'objective={summary["objective"]:.4g}, {moved} samples of small clusters '
                f'moved, cluster sizes {int(sizes.min())}-{int(sizes.max())} '
                f'({time.perf_counter() - t0:.1f} s)')

    def before_train(self, runner) -> None:
        model, bank = self._model(runner)
        check_sizes('ODCHook', bank.length, 'model.memory_bank.length', bank.num_classes,
                    'model.memory_bank.num_classes', runner)
        if not bank.initialized:
            self.init_memory(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.every_n_train_iters(runner, self.small_cluster_interval):
            _, bank = self._model(runner)
            self.moved_samples += bank.deal_with_small_clusters()
