"""Exemplar-CNN (Dosovitskiy, Fischer, Springenberg, Riedmiller & Brox, TPAMI 2016).

"Discriminative Unsupervised Feature Learning with Exemplar Convolutional Neural Networks": a
set of ``N`` seed images sampled from the unlabelled data; each seed is a surrogate class,
populated by heavily augmented copies of it (translation, scale, rotation, contrast, colour);
a network with an ``N``-way softmax classifier is trained to tell the surrogate classes apart.
"""
from typing import Dict, List, Optional, Union

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class ExemplarCNN(BaseSelfSupervisor):
    r"""Parametric classification of surrogate classes, one per seed image.

    The training set IS the seed set: the config restricts the dataset to ``N`` images
    (mmengine's ``indices=`` on the dataset), so a sample's dataset index ``sample_idx`` in
    ``[0, N)`` is its surrogate class.  For views ``x_i^v`` (``v = 1..V`` augmented copies of
    seed ``i``; one view per step is the usual case)::

        loss = 1/(B V) sum_i sum_v CE(head(backbone(x_i^v)), sample_idx_i)

    with ``head`` a ``PretextClsHead`` (global pooling -> optional hidden layer -> ``N``-way
    linear classifier).  Unlike NPID's non-parametric classifier, the classifier has one weight
    vector per seed, so ``N`` is bounded by the classifier's size and by how many augmented
    samples each class gets in the schedule; the paper's accuracy stops improving beyond about
    8000 classes (configs/exemplar_cnn/README.md says how the configs choose ``N``).

    Args:
        backbone: backbone config (any mmpretrain backbone).
        head: ``PretextClsHead`` config; ``num_classes`` = the number of seed images.
        neck: optional neck between backbone and head.
        data_preprocessor: defaults to mmpretrain's ``SelfSupDataPreprocessor``.
        init_cfg: initialisation config.

    The training pipeline gives one view per image (a tensor batch) or ``V`` views (a list, as
    mmpretrain's ``MultiView`` gives) and must keep ``sample_idx`` (``PackInputs`` does).
    ``ExemplarClassesCheckHook`` (in the configs' ``custom_hooks``) stops a run whose seed set
    and classifier size differ before the first step.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 neck: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(backbone=backbone, neck=neck, head=head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)

    @property
    def num_exemplars(self) -> int:
        """``N``: the number of surrogate classes (the classifier's output size)."""
        return int(self.head.num_classes)

    def surrogate_labels(self, data_samples: List[DataSample], num_views: int,
                         device: torch.device) -> torch.Tensor:
        """``sample_idx`` of each sample, repeated for its ``num_views`` views (view-major, as
        the views are concatenated), checked against the number of surrogate classes."""
        idx = []
        for n, ds in enumerate(data_samples or []):
            if 'sample_idx' not in ds:
                raise KeyError(f'ExemplarCNN: data sample {n} has no sample_idx (its surrogate '
                               'class); pack the inputs with PackInputs from an mmengine dataset')
            idx.append(int(ds.sample_idx))
        labels = torch.as_tensor(idx, dtype=torch.long, device=device)
        if labels.numel() and int(labels.max()) >= self.num_exemplars:
            raise ValueError(
                f'ExemplarCNN: dataset index {int(labels.max())} but only {self.num_exemplars} '
                f'surrogate classes (model.head.num_classes); the training set must be the seed '
                f'set: set train_dataloader.dataset.indices={self.num_exemplars} or '
                f'model.head.num_classes to the number of seed images')
        return labels.repeat(num_views)

    def collapse_outputs(self, inputs) -> Dict[str, torch.Tensor]:
        """``CollapseMonitorHook``'s view: the backbone's last features of the first view and
        the softmax over the N surrogate classes."""
        feats = self.backbone(inputs[0] if isinstance(inputs, (list, tuple)) else inputs)
        if self.with_neck:
            feats = self.neck(feats)
        return dict(embedding=feats[-1], probs=torch.softmax(self.head(feats).float(), dim=1))

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        views = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) != 1 or views[0].ndim != 4:
            raise ValueError(f'ExemplarCNN expects one or more image batches of one shape '
                             f'(B, C, H, W); got shapes {sorted(shapes)}')
        if views[0].shape[0] != len(data_samples or []):
            raise ValueError(f'ExemplarCNN: {views[0].shape[0]} images but '
                             f'{len(data_samples or [])} data samples')
        labels = self.surrogate_labels(data_samples, len(views), views[0].device)
        feats = self.backbone(torch.cat(views) if len(views) > 1 else views[0])
        if self.with_neck:
            feats = self.neck(feats)
        return self.head.loss(feats, labels)
