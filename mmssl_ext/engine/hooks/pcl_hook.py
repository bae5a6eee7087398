"""PCL's clustering hook: prototypes of the momentum embeddings at several granularities."""
import time
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import broadcast, get_world_size, is_main_process

from mmssl_ext.clustering import kmeans
from mmssl_ext.engine.hooks.cluster_common import (ScheduledRefreshHook, check_pipeline,
                                                   check_sizes, epoch_start_iters, unwrap_model)
from mmssl_ext.engine.hooks.odc_hook import _Embedding
from mmssl_ext.models.losses.pcl_loss import pcl_concentration
from mmssl_ext.registry import HOOKS


@HOOKS.register_module()
class PCLHook(ScheduledRefreshHook):
    """:class:`PCL`'s E-step, as the official ``main_pcl.py``.

    At the start of every ``interval``-th epoch from ``warmup_epochs`` on: the momentum
    encoder's normalised embeddings of the whole training set (non-augmented ``pipeline``; every
    rank extracts its shard), then on rank 0 for each prototype set ``m`` a faiss k-means with
    ``K_m`` clusters (seed ``seed + m``), the concentration of each cluster
    (:func:`pcl_concentration`, mean ``model.head.temperature``) and the L2-normalised
    centroids; all three are broadcast and written to the model.  Empty clusters are re-seeded
    by :func:`~mmssl_ext.clustering.kmeans` (the official code leaves them, with the largest
    concentration); a cluster with one member gets the largest concentration, as there.

    Args:
        pipeline: non-augmented extraction pipeline (resize 256, centre crop 224).
        warmup_epochs: epochs of InfoNCE only (20).
        interval: epochs between clusterings (1).
        niter / nredo / max_points_per_centroid: faiss k-means (20 / 5 / 1000 officially).
        seed: faiss seed of set 0.
        batch_size / num_workers: of the extraction loader.
        gpu: faiss on the GPU (``'auto'``, ``True``, ``False``).
    """

    def __init__(self, pipeline: Sequence[dict], warmup_epochs: int = 20, interval: int = 1,
                 niter: int = 20, nredo: int = 5, max_points_per_centroid: Optional[int] = 1000,
                 seed: int = 0, batch_size: int = 256, num_workers: Optional[int] = None,
                 gpu='auto') -> None:
        self.pipeline = check_pipeline(pipeline, 'PCLHook')
        for name, value, low in (('warmup_epochs', warmup_epochs, 0), ('interval', interval, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f'PCLHook: {name} must be an int >= {low}, got {value!r}')
        self.warmup_epochs = warmup_epochs
        self.interval = interval
        self.niter = niter
        self.nredo = nredo
        self.max_points_per_centroid = max_points_per_centroid
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.gpu = gpu

    def _model(self, runner):
        model = unwrap_model(runner.model)
        if not hasattr(model, 'set_prototypes'):
            raise TypeError(f'PCLHook needs a PCL model, got {type(model).__name__}')
        return model

    def refresh_iters(self, runner):
        model = self._model(runner)
        for k in model.num_clusters:
            check_sizes('PCLHook', model.num_samples, 'model.num_samples', k,
                        'model.num_clusters', runner)
        return epoch_start_iters(runner, self.warmup_epochs, self.interval)

    def refresh(self, runner, it: int) -> None:
        model = self._model(runner)
        t0 = time.perf_counter()
        feats = self.extract(runner, model.num_samples, backbone=_Embedding(model),
                             normalize=True)
        temperature = float(model.head.temperature)
        for m, k in enumerate(model.num_clusters):
            labels = torch.empty(model.num_samples, dtype=torch.long)
            protos = torch.empty(k, feats.shape[1])
            phi = torch.empty(k)
            if is_main_process():
                res = kmeans(feats, k, niter=self.niter, seed=self.seed + m, l2_normalize=False,
                             nredo=self.nredo, max_points_per_centroid=self.max_points_per_centroid,
                             gpu=self.gpu)
                labels = torch.from_numpy(res.assignments.astype(np.int64))
                protos = F.normalize(torch.from_numpy(res.centroids).float(), dim=1)
                phi = torch.from_numpy(pcl_concentration(
                    feats.numpy(), res.assignments, res.centroids, temperature)).float()
            if get_world_size() > 1:
                for t in (labels, protos, phi):
                    broadcast(t, src=0)
            model.set_prototypes(m, labels, protos, phi)
        runner.logger.info(f'PCLHook: iteration {it}: prototypes K={model.num_clusters} of '
                           f'{len(feats)} momentum embeddings ({time.perf_counter() - t0:.1f} s)')
