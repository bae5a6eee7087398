"""Backbone feature extraction over a dataloader (single process or DDP).

Works for any mmpretrain / mmssl_ext model that has ``data_preprocessor`` and ``backbone``
(every ``BaseSelfSupervisor``, ``ImageClassifier``), and for a bare backbone plus a preprocessor.
Under DDP every rank extracts its shard of the (non-shuffled, ``DefaultSampler``) loader and the
shards are all-gathered and put back in dataset order, so every rank ends with the same full
feature matrix.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather_object, get_dist_info, is_main_process
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar


def pool_feature(feat, pool: str = 'avg') -> torch.Tensor:
    """Reduce one backbone output to ``B x D``: 4-D maps are pooled, tokens averaged."""
    if isinstance(feat, (list, tuple)):
        feat = feat[-1]
    if feat.ndim == 4:
        if pool == 'avg':
            feat = F.adaptive_avg_pool2d(feat, 1)
        elif pool == 'max':
            feat = F.adaptive_max_pool2d(feat, 1)
        else:
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        return feat.flatten(1)
    if feat.ndim == 3:  # B x N x C tokens
        return feat.mean(dim=1)
    if feat.ndim == 2:
        return feat
    raise ValueError(f'cannot pool a backbone output of shape {tuple(feat.shape)}')


def _labels_of(data_samples, batch_size: int) -> torch.Tensor:
    if data_samples is None:
        return torch.full((batch_size, ), -1, dtype=torch.long)
    labels = []
    for ds in data_samples:
        gt = ds.get('gt_label', None) if hasattr(ds, 'get') else None
        labels.append(int(gt.flatten()[0]) if gt is not None and gt.numel() else -1)
    return torch.tensor(labels, dtype=torch.long)


@torch.no_grad()
def extract_features(model: nn.Module,
                     dataloader,
                     stage: int = -1,
                     pool: str = 'avg',
                     normalize: bool = True,
                     backbone: Optional[nn.Module] = None,
                     progress: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Extract (pooled, optionally L2-normalised) backbone features and labels.

    Args:
        model: the model (DDP wrapper allowed); its ``data_preprocessor`` normalises the batch.
        dataloader: a non-shuffled loader (``DefaultSampler(shuffle=False)`` under DDP).
        stage: which backbone output to use (index into the backbone's tuple of outputs).
        pool: ``'avg'`` or ``'max'`` global pooling of 4-D maps.
        normalize: L2-normalise each feature.
        backbone: use this module instead of ``model.backbone``.

    Returns:
        ``(features N x D float32 on CPU, labels N long; -1 where a sample has none)``.
    """
    if is_model_wrapper(model):
        model = model.module
    backbone = backbone if backbone is not None else model.backbone
    was_training = model.training
    model.eval()
    rank, world_size = get_dist_info()
    dataset_len = len(dataloader.dataset)
    bar = ProgressBar(dataset_len) if (progress and is_main_process()) else None
    feats, labels = [], []
    try:
        for data in dataloader:
            data = model.data_preprocessor(data, False)
            inputs = data['inputs']
            if isinstance(inputs, (list, tuple)):  # multi-view pipelines: first view
                inputs = inputs[0]
            outs = backbone(inputs)
            if isinstance(outs, torch.Tensor):
                outs = (outs, )
            f = pool_feature(outs[stage], pool).float()
            if normalize:
                f = F.normalize(f, dim=1)
            feats.append(f.cpu())
            labels.append(_labels_of(data.get('data_samples'), len(f)))
            if bar is not None:
                bar.update(min(len(f) * world_size, dataset_len - bar.completed))
    finally:
        model.train(was_training)
    if bar is not None:
        print()
    feats = torch.cat(feats) if feats else torch.zeros(0, 0)
    labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    if world_size > 1:
        # DefaultSampler gives rank r the samples r, r + W, r + 2W, ... (padded to equal
        # length); gather every shard on every rank, interleave back, drop the padding
        parts = all_gather_object((feats, labels))
        n = max(len(p[0]) for p in parts)
        order_f, order_y = [], []
        for i in range(n):
            for pf, py in parts:
                if i < len(pf):
                    order_f.append(pf[i])
                    order_y.append(py[i])
        feats = torch.stack(order_f[:dataset_len])
        labels = torch.stack(order_y[:dataset_len])
    return feats, labels
