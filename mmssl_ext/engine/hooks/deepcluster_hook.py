"""DeepCluster's re-clustering hook: k-means of the training set's features every epoch.

The extraction, rank-0 k-means and size checks it shares with :class:`ODCHook` live in
:mod:`mmssl_ext.engine.hooks.cluster_common`.
"""
import time
from typing import List, Optional, Sequence

import torch
from mmengine.dist import broadcast, get_world_size
from mmengine.hooks import Hook

from mmssl_ext.clustering import nmi
from mmssl_ext.engine.hooks.cluster_common import (build_extraction_loader, check_pipeline,
                                                   check_sizes, cluster_on_rank0, unwrap_model)
from mmssl_ext.engine.hooks.odc_hook import ODCHook  # noqa: F401  (its old import path)
from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.registry import HOOKS

__all__ = ['DeepClusterHook', 'ODCHook', 'build_extraction_loader']


def _nmi_to_previous(previous: torch.Tensor, labels: torch.Tensor) -> Optional[float]:
    """NMI of new labels to the previous ones; ``None`` before the first clustering (labels -1)
    or without scikit-learn (the log then shows '-')."""
    if not bool((previous >= 0).all()):
        return None
    try:
        return nmi(previous, labels)
    except ImportError:  # pragma: no cover - scikit-learn is in requirements.txt
        return None


def _train_sampler(runner):
    loader = runner.train_dataloader
    sampler = getattr(loader, 'sampler', None)
    if hasattr(sampler, 'set_labels'):
        return sampler
    batch_sampler = getattr(loader, 'batch_sampler', None)
    sampler = getattr(batch_sampler, 'sampler', None)
    return sampler if hasattr(sampler, 'set_labels') else None


@HOOKS.register_module()
class DeepClusterHook(Hook):
    """DeepCluster's clustering step: every ``interval`` epochs (and before the first one).

    At each clustering: extract the backbone features of the whole training set (pipeline
    ``pipeline``, pooled last stage), k-means them on rank 0 with faiss (``pca_dim`` dims, PCA
    whitening, L2 normalisation before and after the PCA; empty clusters re-seeded by
    :func:`~mmssl_ext.clustering.kmeans`), broadcast the labels, write them to the model's buffer
    ``pseudo_labels``, re-initialise the classifier head (rank 0's draw, broadcast; its optimizer
    state, e.g. momentum, dropped) and hand the labels to the ``ClusterUniformSampler``.  The
    normalised mutual information with the previous labels is logged (``deepcluster/nmi``).

    **When.** ``interval`` counts epochs of the training dataloader in both loops:

    * ``EpochBasedTrainLoop``: in ``before_train_epoch`` of epochs ``0, interval, 2*interval ...``;
    * ``IterBasedTrainLoop``: before the first iteration (``before_train``), and in
      ``after_train_iter`` of the last iteration of every ``interval``-th dataloader epoch
      (``len(train_dataloader)`` iterations), i.e. before the next epoch's sampler is drawn.
      This runs before ``CheckpointHook`` (priority NORMAL < VERY_LOW), so a checkpoint written at
      an epoch boundary already holds the new labels and head.  Because the loop creates its
      dataloader iterator (and, with workers, draws the first epoch's indices) before
      ``before_train``, the hook creates it again after the first clustering / the resume.

    **Resume.** The labels are a buffer of the model, so a resumed run continues with the
    checkpoint's labels and does not re-cluster (iteration-based: exactly as the uninterrupted
    run; epoch-based: from an end-of-epoch checkpoint it re-clusters at the next epoch as the
    uninterrupted run would, on the same weights with the same seed).

    Args:
        pipeline: non-augmented pipeline for feature extraction (e.g. resize + centre crop +
            ``PackInputs``).
        interval: re-cluster every ``interval`` epochs (1 in the paper).
        pca_dim: PCA dimensions (256 in the paper; capped at the feature dimension);
            ``None``: no PCA.
        whiten: PCA whitening (the paper: yes).
        l2_normalize: L2-normalise the features before and after PCA.
        niter: k-means iterations (20, as the original code).
        seed: faiss seed of the clustering before epoch ``e`` is ``seed + e``.
        max_points_per_centroid: faiss subsampling (``None``: faiss's 256 per centroid).
        uniform_sampling: require a ``ClusterUniformSampler`` as the train sampler (the paper's
            uniform sampling over pseudo classes); ``False`` allows any sampler.
        reinit_head: re-initialise the classifier after each clustering (the paper: yes).
        reset_head_optim_state: drop the optimizer state (momentum) of the head's parameters
            when it is re-initialised.
        batch_size / num_workers: of the extraction loader (``num_workers=None``: the train
            loader's).
        stage / pool: backbone output and pooling of :func:`extract_features`.
        gpu: faiss on the GPU (``'auto'``, ``True``, ``False``).
    """

    priority = 'NORMAL'

    def __init__(self,
                 pipeline: Sequence[dict],
                 interval: int = 1,
                 pca_dim: Optional[int] = 256,
                 whiten: bool = True,
                 l2_normalize: bool = True,
                 niter: int = 20,
                 seed: int = 0,
                 max_points_per_centroid: Optional[int] = None,
                 uniform_sampling: bool = True,
                 reinit_head: bool = True,
                 reset_head_optim_state: bool = True,
                 batch_size: int = 256,
                 num_workers: Optional[int] = None,
                 stage: int = -1,
                 pool: str = 'avg',
                 gpu='auto') -> None:
        self.pipeline = check_pipeline(pipeline, 'DeepClusterHook')
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'DeepClusterHook: interval must be an int >= 1, got {interval!r}')
        if pca_dim is not None and pca_dim < 1:
            raise ValueError(f'DeepClusterHook: pca_dim must be >= 1 or None, got {pca_dim}')
        if batch_size < 1:
            raise ValueError(f'DeepClusterHook: batch_size must be >= 1, got {batch_size}')
        self.interval = interval
        self.pca_dim = pca_dim
        self.whiten = whiten
        self.l2_normalize = l2_normalize
        self.niter = niter
        self.seed = seed
        self.max_points_per_centroid = max_points_per_centroid
        self.uniform_sampling = uniform_sampling
        self.reinit_head = reinit_head
        self.reset_head_optim_state = reset_head_optim_state
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.stage = stage
        self.pool = pool
        self.gpu = gpu
        self._loader = None
        self.clustered_epochs: List[int] = []  # dataloader epochs clustered by this process
        self.last_summary: Optional[dict] = None

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _iter_based(runner) -> bool:
        return hasattr(runner.train_loop, 'dataloader_iterator')

    def _check(self, runner):
        model = unwrap_model(runner.model)
        if not hasattr(model, 'pseudo_labels') or not hasattr(model, 'set_pseudo_labels'):
            raise TypeError(f'DeepClusterHook needs a DeepCluster model (buffer pseudo_labels), '
                            f'got {type(model).__name__}')
        check_sizes('DeepClusterHook', model.num_samples, 'model.num_samples',
                    model.num_clusters, 'model.head.num_classes', runner)
        if self.uniform_sampling and _train_sampler(runner) is None:
            raise ValueError("DeepClusterHook: uniform_sampling=True needs "
                             "train_dataloader.sampler=dict(type='ClusterUniformSampler') "
                             '(or set uniform_sampling=False)')
        return model

    def _sync_sampler(self, runner, model) -> None:
        sampler = _train_sampler(runner)
        if sampler is not None and model.labels_initialized:
            sampler.set_labels(model.pseudo_labels)

    @staticmethod
    def _restart_iterator(runner) -> None:
        """Let IterBasedTrainLoop draw its current epoch's indices from the current labels."""
        loop = runner.train_loop
        old = loop.dataloader_iterator
        loop.dataloader_iterator = type(old)(loop.dataloader)

    # ------------------------------------------------------------------ clustering

    def cluster(self, runner, epoch: int) -> torch.Tensor:
        """One clustering step (every rank must call it); returns the new labels."""
        model = unwrap_model(runner.model)
        k, n = model.num_clusters, model.num_samples
        if self._loader is None:
            self._loader = build_extraction_loader(runner, self.pipeline, self.batch_size,
                                                   self.num_workers)
        t0 = time.perf_counter()
        feats, _ = extract_features(runner.model, self._loader, stage=self.stage,
                                    pool=self.pool, normalize=False, progress=False)
        if len(feats) != n:
            raise RuntimeError(f'DeepClusterHook: extracted {len(feats)} features for '
                               f'num_samples={n}')
        pca_dim = None if self.pca_dim is None else min(int(self.pca_dim), feats.shape[1])
        labels, summary = cluster_on_rank0(
            feats, k, niter=self.niter, seed=self.seed + epoch, pca_dim=pca_dim,
            whiten=self.whiten and pca_dim is not None, l2_normalize=self.l2_normalize,
            gpu=self.gpu, max_points_per_centroid=self.max_points_per_centroid)
        previous = model.pseudo_labels.detach().cpu().clone()
        model.set_pseudo_labels(labels)
        if self.reinit_head:
            params = model.reinit_head()
            if get_world_size() > 1:
                for p in params:
                    broadcast(p.data, src=0)
            optimizer = getattr(getattr(runner, 'optim_wrapper', None), 'optimizer', None)
            if self.reset_head_optim_state and optimizer is not None:
                for p in params:
                    optimizer.state.pop(p, None)
        self._sync_sampler(runner, model)
        self.clustered_epochs.append(epoch)
        if summary is not None:  # rank 0
            nmi_prev = _nmi_to_previous(previous, labels)
            if nmi_prev is not None:
                runner.message_hub.update_scalar('deepcluster/nmi', nmi_prev)
            runner.logger.info(
                f'DeepClusterHook: clustering for epoch {epoch}: N={n}, K={k}, '
                f'dim={summary["dim"]}, objective={summary["objective"]:.4g}, cluster sizes '
                f'{summary["min_size"]}-{summary["max_size"]}, {summary["num_reseeded"]} '
                f're-seeded, NMI to previous labels: '
                f'{"-" if nmi_prev is None else f"{nmi_prev:.4f}"} '
                f'({time.perf_counter() - t0:.1f} s)')
            self.last_summary = summary
        return labels

    # ------------------------------------------------------------------ hook points

    def before_train(self, runner) -> None:
        model = self._check(runner)
        if self._iter_based(runner):
            if not model.labels_initialized:  # a fresh run (a resumed one has its labels)
                self.cluster(runner, 0)
            self._sync_sampler(runner, model)
            self._restart_iterator(runner)
        else:
            self._sync_sampler(runner, model)

    def before_train_epoch(self, runner) -> None:
        if self._iter_based(runner):
            return
        model = unwrap_model(runner.model)
        if runner.epoch % self.interval == 0 or not model.labels_initialized:
            self.cluster(runner, runner.epoch)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self._iter_based(runner):
            return
        epoch_len = len(runner.train_dataloader)
        done = runner.iter + 1
        if done % epoch_len == 0 and done < runner.max_iters and \
                (done // epoch_len) % self.interval == 0:
            self.cluster(runner, done // epoch_len)
