"""DeepCluster (Caron, Bojanowski, Joulin & Douze, ECCV 2018)."""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.models.data_preprocessors import SobelDataPreprocessor  # noqa: F401 (old path)
from mmssl_ext.registry import MODELS
from ..memories.data_sized import DataSizedMixin, unset_size_error


def sample_indices(data_samples: List[DataSample], num_samples: Optional[int], device,
                   owner: str) -> torch.Tensor:
    """The dataset indices (``sample_idx``) of a batch, checked against ``num_samples``."""
    if num_samples is None:
        raise unset_size_error(owner, 'num_samples / memory_bank.length')
    try:
        idx = torch.as_tensor([int(ds.sample_idx) for ds in data_samples], dtype=torch.long,
                              device=device)
    except AttributeError as e:
        raise KeyError(f'{owner}: data samples lack sample_idx (PackInputs packs it from the '
                       f'dataset); it indexes the pseudo labels') from e
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_samples):
        bad = int(idx.max()) if int(idx.max()) >= num_samples else int(idx.min())
        raise IndexError(f'{owner}: dataset index {bad} outside the {num_samples} pseudo labels '
                         f'(set model.num_samples / the memory length to the training set size)')
    return idx


def _check_num_samples(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'DeepCluster: num_samples must be a positive int (the training set '
                         f'size), got {n!r}')


@MODELS.register_module()
class DeepCluster(DataSizedMixin, BaseSelfSupervisor):
    r"""DeepCluster: alternate k-means on the features and classification of the cluster ids.

    Every epoch (``DeepClusterHook``): extract the pooled backbone features of the WHOLE training
    set with a non-augmented pipeline, PCA-reduce to 256 dims, whiten, L2-normalise, run k-means
    (faiss) with ``K`` clusters; the assignments become the pseudo labels ``y_n``, the classifier
    ``W`` is re-initialised and the images are sampled uniformly over the clusters
    (``ClusterUniformSampler``).  Between re-clusterings the network is trained by

    .. math::

        \min_{\theta, W} \frac{1}{B} \sum_{n \in \text{batch}}
            \ell\big(W \operatorname{pool}(f_\theta(x_n)), y_n\big)

    with ``l`` the cross-entropy.  The pseudo labels live in the buffer ``pseudo_labels``
    (``num_samples`` long ints, ``-1`` = not clustered yet), indexed by the dataset index
    ``sample_idx``, so they are in every checkpoint.

    Defaults of the paper / original code: ``K = 10000`` on ImageNet, re-clustering every epoch,
    PCA 256 + whitening + L2, 20 k-means iterations, Sobel-filtered input
    (:class:`SobelDataPreprocessor`), SGD lr 0.05 (batch 256), momentum 0.9, wd 1e-5; the top
    layer is re-initialised after each clustering (normal, std 0.01; its momentum discarded).

    Args:
        backbone: backbone config.
        neck: pooling neck (mmpretrain's ``GlobalAveragePooling``).
        head: classifier over the ``K`` clusters: mmpretrain's ``LinearClsHead`` (``num_classes``
            = ``K``) with its ``CrossEntropyLoss``.
        num_samples: size of the training set (the length of ``pseudo_labels``); left unset
            (``None``) in a config, ``SSLRunner`` sets it from the training set.
        head_init_std: std of the normal re-initialisation of the head's linear layers.
    """

    pseudo_labels: torch.Tensor
    SIZE_ARG = 'num_samples'
    SIZED_BUFFERS = ('pseudo_labels', )

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 num_samples: Optional[int] = None,
                 head_init_std: float = 0.01,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if num_samples is not None:
            _check_num_samples(num_samples)
        k = getattr(self.head, 'num_classes', None)
        if not isinstance(k, int) or k < 2:
            raise ValueError(f'DeepCluster: the head needs num_classes = K >= 2 clusters, '
                             f'got {k!r}')
        if head_init_std <= 0:
            raise ValueError(f'DeepCluster: head_init_std must be positive, got {head_init_std}')
        self.head_init_std = float(head_init_std)
        self.num_samples: Optional[int] = None
        if num_samples is None:  # unsized: SSLRunner or a checkpoint sets it
            self.register_buffer('pseudo_labels', torch.empty(0, dtype=torch.long))
        else:
            self.allocate_rows(num_samples)

    def allocate_rows(self, n: int, fill: bool = True) -> None:
        """``n`` samples, none clustered yet (label ``-1``)."""
        _check_num_samples(n)
        if self.num_clusters > n:
            raise ValueError(f'DeepCluster: K={self.num_clusters} clusters (head.num_classes) > '
                             f'N={n} samples (num_samples); k-means needs K <= N')
        self.num_samples = n
        device = self.pseudo_labels.device if hasattr(self, 'pseudo_labels') else None
        self.register_buffer('pseudo_labels',
                             torch.full((n, ), -1, dtype=torch.long, device=device))

    @property
    def num_clusters(self) -> int:
        return int(self.head.num_classes)

    @property
    def labels_initialized(self) -> bool:
        return self.num_samples is not None and bool((self.pseudo_labels >= 0).all())

    @torch.no_grad()
    def set_pseudo_labels(self, labels: Sequence[int]) -> None:
        """Write new cluster assignments (one per dataset index, in ``[0, K)``)."""
        if self.num_samples is None:
            raise unset_size_error('DeepCluster', 'num_samples')
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.numel() != self.num_samples:
            raise ValueError(f'DeepCluster: got {labels.numel()} labels for num_samples='
                             f'{self.num_samples}')
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f'DeepCluster: pseudo labels must be integers, got {labels.dtype}')
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_clusters):
            raise ValueError(f'DeepCluster: pseudo labels must be in [0, {self.num_clusters}), got '
                             f'[{int(labels.min())}, {int(labels.max())}]')
        self.pseudo_labels.copy_(labels.to(self.pseudo_labels.device, torch.long))

    @torch.no_grad()
    def reinit_head(self) -> List[nn.Parameter]:
        """Re-initialise the head's linear layers (normal(0, std), zero bias), as DeepCluster does
        after every clustering: the old classes are gone.  Returns the head's parameters."""
        for m in self.head.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, self.head_init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        return list(self.head.parameters())

    @torch.no_grad()
    def collapse_outputs(self, inputs) -> Dict[str, torch.Tensor]:
        """``CollapseMonitorHook``'s view: the pooled features and the softmax over the K
        clusters."""
        feats = self.backbone(inputs[0] if isinstance(inputs, (list, tuple)) else inputs)
        if self.with_neck:
            feats = self.neck(feats)
        return dict(embedding=feats[-1], probs=torch.softmax(self.head(feats).float(), dim=1))

    def loss(self, inputs, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        img = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        idx = sample_indices(data_samples, self.num_samples, img.device, 'DeepCluster')
        target = self.pseudo_labels[idx]
        if bool((target < 0).any()):
            raise RuntimeError('DeepCluster: the batch holds samples without a pseudo label; the '
                               "model must be trained with dict(type='DeepClusterHook') in "
                               'custom_hooks, which clusters before the first epoch')
        feats = self.backbone(img)
        if self.with_neck:
            feats = self.neck(feats)
        logits = self.head(feats)
        loss = self.head.loss_module(logits, target, avg_factor=logits.size(0))
        acc = (logits.detach().argmax(dim=1) == target).float().mean() * 100
        return dict(loss=loss, cluster_acc=acc)
