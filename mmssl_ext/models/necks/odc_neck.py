"""ODC's projection neck (Zhan et al., CVPR 2020), as mmselfsup's ``ODCNeck``."""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class ODCNeck(BaseModule):
    """``fc - BN - ReLU - dropout - fc - ReLU`` on the pooled backbone feature.

    The reference (mmselfsup 0.x / 1.x ``ODCNeck``, OpenSelfSup's ``NonLinearNeckV0``) uses a
    BatchNorm without affine parameters and with momentum 0.001, dropout 0.5 and a final ReLU, so
    the embeddings the memory stores (after L2 normalisation) are non-negative.  Every piece is a
    parameter whose default is the reference's.

    Args:
        in_channels: channels of the backbone's last output.
        hid_channels: size of the hidden layer.
        out_channels: size of the embedding.
        with_avg_pool: global average pooling of a 4-D input first. Defaults to True.
        norm_cfg: norm layer of the hidden layer; ``momentum`` / ``affine`` default to the
            reference's 0.001 / False unless given here. Defaults to ``dict(type='SyncBN')``.
        dropout: dropout probability after the hidden ReLU (0 disables it). Defaults to 0.5.
        last_relu: ReLU on the output. Defaults to True.
        init_cfg: as mmselfsup's: BatchNorm weights (if any) 1, linear layers PyTorch's default.
    """

    def __init__(self,
                 in_channels: int,
                 hid_channels: int,
                 out_channels: int,
                 with_avg_pool: bool = True,
                 norm_cfg: dict = dict(type='SyncBN'),
                 dropout: float = 0.5,
                 last_relu: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = dict(
                     type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])) -> None:
        super().__init__(init_cfg)
        if not 0 <= dropout < 1:
            raise ValueError(f'ODCNeck: dropout must be in [0, 1), got {dropout}')
        self.with_avg_pool = with_avg_pool
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1)) if with_avg_pool else None
        self.fc0 = nn.Linear(in_channels, hid_channels)
        self.bn0 = build_norm_layer(dict(dict(momentum=0.001, affine=False), **norm_cfg),
                                    hid_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc1 = nn.Linear(hid_channels, out_channels)
        self.last_relu = last_relu

    def forward(self, x: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """The last backbone output -> ``[embedding]`` (``B x out_channels``)."""
        x = x[-1]
        if self.avgpool is not None and x.dim() == 4:
            x = self.avgpool(x)
        x = self.fc1(self.dropout(self.relu(self.bn0(self.fc0(x.flatten(1))))))
        return [self.relu(x) if self.last_relu else x]
