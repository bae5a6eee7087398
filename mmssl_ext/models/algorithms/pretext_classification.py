"""Shared body of the covariant pretext tasks that classify a transformation.

RotNet, Jigsaw puzzles and relative patch location all do the same thing: run the backbone on
``N`` views per sample in ONE batch (``B*N`` images or patches), and let a
:class:`~mmssl_ext.models.heads.PretextClsHead` predict the transformation that produced them.
Each method's file only says which views and which label.
"""
from typing import Dict, List, Optional, Union

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample


class PretextClassification(BaseSelfSupervisor):
    """Backbone on all views of the batch at once, then a pretext classification head.

    Subclasses set :attr:`label_key` (the ``DataSample`` field written by the transform,
    packed with ``PackInputs(algorithm_keys=[label_key])``) and :attr:`num_views` (views per
    sample the transform produces; ``None``: any), and may override :meth:`prepare_views`.

    Args:
        backbone: backbone config (any mmpretrain backbone).
        head: ``PretextClsHead`` config.
        neck: optional neck between backbone and head.
    """

    label_key: str = ''
    num_views: Optional[int] = None
    pipeline_hint: str = ''

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 neck: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(backbone=backbone, neck=neck, head=head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)

    def _check_views(self, inputs) -> torch.Tensor:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f'{type(self).__name__} expects one input tensor '
                                 f'(B x N x C x H x W), got a list of {len(inputs)}')
            inputs = inputs[0]
        if inputs.ndim != 5:
            raise ValueError(f'{type(self).__name__} expects the views of each sample stacked '
                             f'as B x N x C x H x W, got shape {tuple(inputs.shape)}; '
                             f'{self.pipeline_hint}')
        if self.num_views is not None and inputs.shape[1] != self.num_views:
            raise ValueError(f'{type(self).__name__} expects {self.num_views} views per sample, '
                             f'got {inputs.shape[1]} (input shape {tuple(inputs.shape)})')
        return inputs

    def targets(self, data_samples: List[DataSample], device) -> torch.Tensor:
        """The pretext labels of the batch, one row per sample (``B`` or ``B x N``)."""
        missing = [i for i, ds in enumerate(data_samples) if self.label_key not in ds]
        if missing:
            raise KeyError(f'{type(self).__name__}: data sample(s) {missing[:5]} lack '
                           f'{self.label_key!r}; pack it with dict(type=\'PackInputs\', '
                           f"algorithm_keys=['{self.label_key}']) after the pretext transform")
        return torch.stack([torch.as_tensor(ds.get(self.label_key)) for ds in data_samples]
                           ).to(device=device, dtype=torch.long)

    def prepare_views(self, views: torch.Tensor) -> torch.Tensor:
        """Hook for per-view processing of the ``(B*N) x C x H x W`` batch (identity)."""
        return views

    @torch.no_grad()
    def collapse_outputs(self, inputs) -> Dict[str, torch.Tensor]:
        """``CollapseMonitorHook``'s view: the features of every view and the head's softmax
        over the transformations."""
        feats = self.backbone(self.prepare_views(self._check_views(inputs).flatten(0, 1)))
        if self.with_neck:
            feats = self.neck(feats)
        return dict(embedding=feats[-1], probs=torch.softmax(self.head(feats).float(), dim=1))

    def loss(self, inputs, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        views = self._check_views(inputs)
        target = self.targets(data_samples, views.device)
        feats = self.backbone(self.prepare_views(views.flatten(0, 1)))
        if self.with_neck:
            feats = self.neck(feats)
        return self.head.loss(feats, target)
