"""Classification head of the covariant pretext tasks (rotation, jigsaw, relative location)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmpretrain.evaluation import Accuracy

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class PretextClsHead(BaseModule):
    """Predict a pretext label from the backbone features of ``num_inputs`` inputs per sample.

    ``num_inputs = 1`` (RotNet: one rotated image per target)::

        logits = fc(dropout(pool(x)))                                  or with ``hidden_channels``
        logits = fc(dropout(relu(fc_hidden(pool(x)))))

    ``num_inputs = N > 1`` (Jigsaw: 9 tiles, relative location: 2 patches): the siamese "late
    fusion" of Noroozi & Favaro (2016) and Doersch et al. (2015): every input is pooled and
    projected on its own (shared weights, ``fc6``), the N projections are concatenated in input
    order (the order carries the answer) and classified (``fc7`` -> ``fc8``)::

        h_i    = relu(fc_input(pool(x_i)))                   i = 1..N, shared fc_input
        logits = fc(dropout(relu(fc_hidden([h_1, ..., h_N]))))

    Args:
        in_channels: channels of the backbone's last output (512 for ResNet-18, 2048 for R50).
        num_classes: pretext classes (4 rotations, the permutation-set size, 8 neighbours).
        num_inputs: inputs per target, consecutive in the batch. Defaults to 1.
        input_channels: size of the per-input projection (required when ``num_inputs > 1``).
        hidden_channels: size of the hidden layer before the classifier (None: none; required
            when ``num_inputs > 1``).
        dropout: dropout before the classifier (and the hidden layer). Defaults to 0.
        loss: loss config (mmpretrain's ``CrossEntropyLoss`` by default).
        topk: accuracies to log. Defaults to (1, ).
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 num_inputs: int = 1,
                 input_channels: Optional[int] = None,
                 hidden_channels: Optional[int] = None,
                 dropout: float = 0.0,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 topk: Sequence[int] = (1, ),
                 init_cfg: Optional[Union[dict, List[dict]]] = dict(
                     type='Normal', layer='Linear', std=0.01)):
        super().__init__(init_cfg=init_cfg)
        if num_classes < 2:
            raise ValueError(f'PretextClsHead: num_classes must be >= 2, got {num_classes}')
        if num_inputs < 1:
            raise ValueError(f'PretextClsHead: num_inputs must be >= 1, got {num_inputs}')
        if num_inputs > 1 and (input_channels is None or hidden_channels is None):
            raise ValueError(f'PretextClsHead: num_inputs={num_inputs} needs input_channels and '
                             f'hidden_channels (the per-input projection and the joint layer)')
        self.num_classes = num_classes
        self.num_inputs = num_inputs
        self.topk = tuple(topk)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if num_inputs > 1:
            self.fc_input = nn.Sequential(nn.Linear(in_channels, input_channels),
                                          nn.ReLU(inplace=True))
            joint = num_inputs * input_channels
        else:
            self.fc_input = None
            joint = in_channels
        if hidden_channels is not None:
            self.fc_hidden = nn.Sequential(nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                                           nn.Linear(joint, hidden_channels),
                                           nn.ReLU(inplace=True))
            joint = hidden_channels
        else:
            self.fc_hidden = None
        self.fc = nn.Linear(joint, num_classes)
        self.loss_module = MODELS.build(loss)

    def forward(self, feats: Union[torch.Tensor, Tuple[torch.Tensor]]) -> torch.Tensor:
        """Logits ``(B_inputs / num_inputs) x num_classes`` from the last backbone output."""
        x = feats[-1] if isinstance(feats, (list, tuple)) else feats
        if x.ndim == 4:
            x = self.pool(x)
        x = x.flatten(1)
        if x.shape[0] % self.num_inputs:
            raise ValueError(f'PretextClsHead got {x.shape[0]} input features, not a multiple '
                             f'of num_inputs={self.num_inputs}')
        if self.fc_input is not None:
            x = self.fc_input(x).reshape(x.shape[0] // self.num_inputs, -1)
        if self.fc_hidden is not None:
            x = self.fc_hidden(x)
        return self.fc(self.dropout(x))

    def loss(self, feats, target: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``loss`` (the optimised term) and ``accuracy_top-k`` (percent, detached)."""
        logits = self(feats)
        target = target.reshape(-1).to(logits.device, torch.long)
        if target.shape[0] != logits.shape[0]:
            raise ValueError(f'PretextClsHead: {target.shape[0]} targets for {logits.shape[0]} '
                             f'predictions')
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
            raise ValueError(f'PretextClsHead: targets must be in [0, {self.num_classes}), got '
                             f'min {int(target.min())} max {int(target.max())}; does the '
                             f"head's num_classes match the transform's label set?")
        out = dict(loss=self.loss_module(logits, target))
        topk = tuple(k for k in self.topk if k <= self.num_classes)
        with torch.no_grad():
            accs = Accuracy.calculate(logits.detach(), target, topk=topk)
        for k, acc in zip(topk, accs):  # one entry per k, each a list over thresholds
            out[f'accuracy_top-{k}'] = acc[0].detach()
        return out
