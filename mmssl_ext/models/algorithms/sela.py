"""SeLa: self-labelling via simultaneous clustering and representation learning (Asano,
Rupprecht & Vedaldi, ICLR 2020)."""
from typing import Dict, List, Optional

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.models.algorithms.deepcluster import sample_indices
from mmssl_ext.models.memories.data_sized import DataSizedMixin, unset_size_error
from mmssl_ext.registry import MODELS


@MODELS.register_module()
class SeLa(DataSizedMixin, BaseSelfSupervisor):
    r"""SeLa: classify every image into pseudo classes that are an equal partition of the data.

    Training minimises ``mean_h CE(head_h(pool(f(x_i))), y_{h,i})`` over ``H`` heads; from time
    to time :class:`SeLaHook` re-assigns the labels ``y_h`` by Sinkhorn-Knopp
    (:func:`sela_sinkhorn`) on the softmax outputs of each head over the whole training set, so
    that each of the ``K`` classes receives ``N / K`` images.  The labels live in the buffer
    ``pseudo_labels`` (``H x N``, ``-1`` = not assigned yet), so they are in every checkpoint.

    Args:
        backbone / neck: backbone and pooling (``GlobalAveragePooling``).
        head: :class:`SeLaHead` (``num_heads`` x ``num_classes``).
        num_samples: the training set size; left unset (``None``) in a config, ``SSLRunner``
            sets it from the training set.
    """

    pseudo_labels: torch.Tensor
    SIZE_ARG = 'num_samples'
    SIZED_BUFFERS = ('pseudo_labels', )
    SIZED_DIM = 1  # heads x N

    def __init__(self, backbone: dict, neck: dict, head: dict,
                 num_samples: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.num_samples: Optional[int] = None
        if num_samples is None:  # unsized: SSLRunner or a checkpoint sets it
            self.register_buffer('pseudo_labels',
                                 torch.empty(self.head.num_heads, 0, dtype=torch.long))
        else:
            self.allocate_rows(num_samples)

    def allocate_rows(self, n: int, fill: bool = True) -> None:
        """``n`` samples, none labelled yet (``-1``), one row per head."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f'SeLa: num_samples must be an int >= 2 (the training set size), '
                             f'got {n!r}')
        if self.head.num_classes > n:
            raise ValueError(f'SeLa: K={self.head.num_classes} classes (head.num_classes) > '
                             f'N={n} samples (num_samples); the equal partition needs K <= N')
        self.num_samples = n
        device = self.pseudo_labels.device if hasattr(self, 'pseudo_labels') else None
        self.register_buffer('pseudo_labels', torch.full((self.head.num_heads, n), -1,
                                                         dtype=torch.long, device=device))

    @property
    def labels_initialized(self) -> bool:
        return self.num_samples is not None and bool((self.pseudo_labels >= 0).all())

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """The pooled features the heads classify."""
        return self.neck(self.backbone(img))[-1].flatten(1)

    @torch.no_grad()
    def set_pseudo_labels(self, labels: torch.Tensor) -> None:
        """Write ``H x N`` labels in ``[0, K)``."""
        if self.num_samples is None:
            raise unset_size_error('SeLa', 'num_samples')
        labels = torch.as_tensor(labels)
        if labels.shape != self.pseudo_labels.shape:
            raise ValueError(f'SeLa: labels of shape {tuple(labels.shape)}, expected '
                             f'{tuple(self.pseudo_labels.shape)} (heads x N)')
        if int(labels.min()) < 0 or int(labels.max()) >= self.head.num_classes:
            raise ValueError(f'SeLa: pseudo labels must be in [0, {self.head.num_classes})')
        self.pseudo_labels.copy_(labels)

    def collapse_outputs(self, inputs) -> Dict[str, torch.Tensor]:
        """``CollapseMonitorHook``'s view: the pooled features and every head's softmax over its
        K pseudo classes, the heads' rows stacked (the mean entropy averages over heads)."""
        feats = self.features(inputs[0] if isinstance(inputs, (list, tuple)) else inputs)
        probs = torch.cat([torch.softmax(logits.float(), dim=1) for logits in self.head(feats)])
        return dict(embedding=feats, probs=probs)

    def loss(self, inputs, data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        img = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        idx = sample_indices(data_samples, self.num_samples, img.device, 'SeLa')
        target = self.pseudo_labels[:, idx]
        if bool((target < 0).any()):
            raise RuntimeError("SeLa: samples without pseudo labels; train with "
                               "dict(type='SeLaHook') in custom_hooks, which assigns them "
                               'before the first iteration')
        return dict(loss=self.head.loss(self.features(img), target))
