"""What the re-clustering hooks (:class:`DeepClusterHook`, :class:`ODCHook`) share.

Both extract features of the WHOLE training set with a non-augmented pipeline (the hook's
``pipeline``, applied to ``train_dataloader.dataset``, so the indices are the training indices),
using :func:`mmssl_ext.evaluation.extract_features`: under DDP every rank extracts its shard and
ends with the full matrix.  k-means (:func:`mmssl_ext.clustering.kmeans`, faiss) runs on rank 0
only and its labels are broadcast, so every rank holds identical labels whatever faiss does with
threads or GPUs.  Single process: the same code without the collectives (mmselfsup's hooks
assumed DDP and broke in one process).  All state lives in model buffers, so it is checkpointed.
"""
import copy
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmengine.dist import broadcast, get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssl_ext.clustering import kmeans
from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.utils.config import build_dataloader


def unwrap_model(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def build_extraction_loader(runner, pipeline: Sequence[dict], batch_size: int,
                            num_workers: Optional[int] = None):
    """A non-shuffled loader over ``train_dataloader.dataset`` with ``pipeline`` instead of the
    training augmentations (same samples, same order, same ``sample_idx``)."""
    train_cfg = runner.cfg.get('train_dataloader', None)
    if train_cfg is None or 'dataset' not in train_cfg:
        raise ValueError('the clustering hooks need cfg.train_dataloader.dataset')
    dataset = copy.deepcopy(train_cfg['dataset'])
    if not isinstance(dataset, dict) or 'pipeline' not in dataset:
        raise ValueError('the clustering hooks replace the pipeline of train_dataloader.dataset; '
                         'it must be a dataset config with a pipeline (dataset wrappers such as '
                         'RepeatDataset are not supported)')
    dataset['pipeline'] = copy.deepcopy(list(pipeline))
    if num_workers is None:
        num_workers = int(train_cfg.get('num_workers', 0))
    loader = dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'), dataset=dataset)
    return build_dataloader(loader, seed=runner.seed)


def check_pipeline(pipeline, owner: str) -> List[dict]:
    if not isinstance(pipeline, (list, tuple)) or not pipeline:
        raise ValueError(f'{owner}: pipeline must be a non-empty list of transforms (the '
                         f'non-augmented feature-extraction pipeline), got {pipeline!r}')
    return list(pipeline)


def cluster_on_rank0(feats: torch.Tensor, k: int, **kmeans_kwargs):
    """k-means on rank 0, labels broadcast to every rank; ``(labels, summary or None)``."""
    n = len(feats)
    labels = torch.empty(n, dtype=torch.long)
    summary = None
    if is_main_process():
        res = kmeans(feats, k, **kmeans_kwargs)
        labels = torch.from_numpy(res.assignments.astype(np.int64))
        summary = res.summary()
    if get_world_size() > 1:
        broadcast(labels, src=0)
    return labels, summary


def check_sizes(owner: str, n_model: int, key: str, k: int, k_key: str, runner) -> None:
    n = len(runner.train_dataloader.dataset)
    if n_model != n:
        raise ValueError(f'{owner}: {key}={n_model} but the training set '
                         f'(train_dataloader.dataset) has N={n} samples; set '
                         f'--cfg-options {key}={n}')
    if k > n:
        raise ValueError(f'{owner}: K={k} clusters ({k_key}) > N={n} training samples; '
                         f'k-means needs K <= N')


def epoch_start_iters(runner, start_epoch: int, interval: int) -> List[int]:
    """Iterations that begin dataloader epochs ``start_epoch, start_epoch + interval, ...`` of
    the run (``len(train_dataloader)`` iterations per epoch, in either train loop)."""
    epoch_len = len(runner.train_dataloader)
    num_epochs = -(-runner.max_iters // epoch_len)
    return [e * epoch_len for e in range(start_epoch, num_epochs, interval)]


class ScheduledRefreshHook(Hook):
    """Base of the hooks that refresh a model's cluster state at given iterations (LA, PCL,
    SeLa): ``refresh(runner, it)`` runs in ``before_train_iter`` of every iteration ``it`` (the
    0-based ``runner.iter``) that ``refresh_iters(runner)`` lists, on every rank (a collective).

    The same point serves ``IterBasedTrainLoop`` and ``EpochBasedTrainLoop`` (an epoch start is
    iteration ``epoch * len(train_dataloader)``).  The state is in model buffers, so in the
    checkpoints; a checkpoint written after iteration ``it - 1`` precedes the refresh of ``it``,
    so a resumed run refreshes exactly where the uninterrupted one did, on the same weights.
    """

    priority = 'NORMAL'

    def refresh_iters(self, runner) -> Sequence[int]:
        raise NotImplementedError

    def refresh(self, runner, it: int) -> None:
        raise NotImplementedError

    def extract(self, runner, num_samples: int, **kwargs) -> torch.Tensor:
        """Features of the whole training set through ``self.pipeline`` (the loader is built
        once, ``self.batch_size`` / ``self.num_workers``); ``kwargs`` go to
        :func:`extract_features`; checked to be ``num_samples`` rows."""
        if getattr(self, '_loader', None) is None:
            self._loader = build_extraction_loader(runner, self.pipeline, self.batch_size,
                                                   self.num_workers)
        feats, _ = extract_features(runner.model, self._loader, progress=False, **kwargs)
        if len(feats) != num_samples:
            raise RuntimeError(f'{type(self).__name__}: extracted {len(feats)} features for '
                               f'num_samples={num_samples}')
        return feats

    def before_train(self, runner) -> None:
        self._refresh_at = {int(i) for i in self.refresh_iters(runner)}
        self.refreshed: List[int] = []  # iterations refreshed by this process, this run

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.iter in self._refresh_at:
            self.refresh(runner, runner.iter)
            self.refreshed.append(runner.iter)
