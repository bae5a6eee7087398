"""ODC: Online Deep Clustering (Zhan, Xie, Liu, Ong & Loy, CVPR 2020)."""
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS
from ..memories.odc_memory import odc_class_weights
from .deepcluster import sample_indices


@MODELS.register_module()
class ODC(BaseSelfSupervisor):
    r"""Online deep clustering: classify the memory's cluster labels, update them online.

    DeepCluster re-clusters the whole data set once per epoch, so the network trains on labels
    that are a whole epoch old and the classifier is thrown away every epoch.  ODC keeps the
    labels and the centroids in a memory (:class:`~mmssl_ext.models.memories.ODCMemory`) and
    updates them every iteration with the batch's features:

    .. math::

        z_i &= \text{neck}(f_\theta(x_i)),\qquad
        \mathcal{L} = \frac{\sum_i w_{y_i}\,\ell(W z_i, y_i)}{\sum_i w_{y_i}},
        \qquad w_k \propto |C_k|^{-1/2}

    with ``y_i`` the sample's label in the memory (before this step's update) and ``|C_k|`` the
    cluster sizes (the loss re-weighting of the paper, ``reweight_pow = 0.5``); then the memory
    takes ``z_i``: EMA of the sample's feature, re-assignment to the nearest centroid, update of
    the touched centroids.  ``ODCHook`` initialises the memory with a k-means of the whole
    training set (features ``z`` of the initial network) and dissolves small clusters every
    iteration.  Under DDP the weighted mean uses the sum of the weights of ALL ranks, so the
    gradient equals the single-process one on the global batch.

    Defaults of the paper / mmselfsup's config: ``K = 10000`` on ImageNet, memory momentum 0.5,
    ``min_cluster_size = 20``, neck 2048 -> 512 -> 256 (``ODCNeck``), SGD lr 0.06 (batch 512),
    momentum 0.9 (0 for the head), wd 1e-5, lr x0.4 at epoch 400 of 440.

    Args:
        backbone: backbone config.
        neck: the projection to the memory's feature space (``ODCNeck``: mmselfsup's
            fc-BN-ReLU-dropout-fc-ReLU).
        head: classifier over the ``K`` clusters (mmpretrain's ``LinearClsHead``; its
            ``CrossEntropyLoss`` is used with per-sample weights).
        memory_bank: ``ODCMemory`` config (``length`` = training set size, ``num_classes`` = ``K``).
        reweight_pow: exponent ``p`` of ``w_k = |C_k|^{-p}`` (0 disables the re-weighting).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 memory_bank: dict,
                 reweight_pow: float = 0.5,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.memory_bank = MODELS.build(memory_bank)
        k = getattr(self.head, 'num_classes', None)
        if k != self.memory_bank.num_classes:
            raise ValueError(f'ODC: head.num_classes={k} must equal '
                             f'memory_bank.num_classes={self.memory_bank.num_classes} (K)')
        if reweight_pow < 0:
            raise ValueError(f'ODC: reweight_pow must be >= 0, got {reweight_pow}')
        self.reweight_pow = float(reweight_pow)

    @property
    def num_clusters(self) -> int:
        return int(self.memory_bank.num_classes)

    @property
    def num_samples(self) -> int:
        return int(self.memory_bank.length)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """``z = neck(backbone(x))`` (not normalised; the memory normalises)."""
        return self.neck(self.backbone(img))[0]

    def class_weights(self) -> torch.Tensor:
        """``w_k ∝ |C_k|^{-p}`` from the memory's current labels."""
        return odc_class_weights(self.memory_bank.cluster_sizes(), self.reweight_pow)

    @torch.no_grad()
    def collapse_outputs(self, inputs) -> Dict[str, torch.Tensor]:
        """``CollapseMonitorHook``'s view: ``z`` and the softmax over the clusters."""
        z = self.embed(inputs[0] if isinstance(inputs, (list, tuple)) else inputs)
        return dict(embedding=z, probs=torch.softmax(self.head((z, )).float(), dim=1))

    def loss(self, inputs, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        img = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        bank = self.memory_bank
        if not bank.initialized:
            raise RuntimeError("ODC: the memory is not initialised; add dict(type='ODCHook', ...) "
                               'to custom_hooks (k-means of the training set before the first '
                               'iteration)')
        idx = sample_indices(data_samples, bank.length, img.device, 'ODC')
        target = bank.labels[idx]
        z = self.embed(img)
        logits = self.head((z, ))
        weight = self.class_weights().to(logits.dtype)[target]
        # weighted mean over the GLOBAL batch: DDP averages the ranks' gradients, so dividing by
        # the mean (over ranks) of the per-rank weight sums gives sum(w l) / sum(w) overall
        denom = weight.sum().detach().clone()
        if get_world_size() > 1:
            all_reduce(denom, op='sum')
            denom = denom / get_world_size()
        loss = self.head.loss_module(logits, target, weight=weight,
                                     avg_factor=denom.clamp(min=1e-12))
        acc = (logits.detach().argmax(dim=1) == target).float().mean() * 100
        change_ratio = bank.update(idx, z.detach())
        return dict(loss=loss, cluster_acc=acc, label_change_ratio=change_ratio)
