"""PIRL's projection g of the jigsaw view: per-patch projection, concatenation, projection."""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class JigsawProjectionNeck(BaseModule):
    """``g(v_It)`` of PIRL: each patch's pooled feature is projected to ``patch_channels``, the
    ``num_patches`` projections are concatenated in the (shuffled) input order and projected to
    ``out_channels``.

    Args:
        in_channels: backbone feature channels (512 for ResNet-18, 2048 for ResNet-50).
        num_patches: patches per image (9 for a 3x3 jigsaw).
        patch_channels: per-patch projection size (128 in PIRL).
        out_channels: embedding size (128 in PIRL).
        with_avg_pool: globally average-pool 4-D backbone maps first.

    Input: backbone outputs for ``B * num_patches`` patches (a tuple; the last entry is used),
    patches of one image consecutive.  Output: a 1-tuple with the ``B x out_channels`` embedding.
    """

    def __init__(self,
                 in_channels: int,
                 num_patches: int = 9,
                 patch_channels: int = 128,
                 out_channels: int = 128,
                 with_avg_pool: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        self.num_patches = num_patches
        self.with_avg_pool = with_avg_pool
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.patch_fc = nn.Linear(in_channels, patch_channels)
        self.fc = nn.Linear(num_patches * patch_channels, out_channels)

    def forward(self, x: Tuple[torch.Tensor]) -> Tuple[torch.Tensor]:
        feat = x[-1]
        if self.with_avg_pool and feat.ndim == 4:
            feat = self.avgpool(feat)
        feat = feat.flatten(1)
        if feat.shape[0] % self.num_patches:
            raise ValueError(f'JigsawProjectionNeck got {feat.shape[0]} patch features, not a '
                             f'multiple of num_patches={self.num_patches}')
        per_patch = self.patch_fc(feat)  # (B*N) x patch_channels
        joint = per_patch.view(-1, self.num_patches * per_patch.shape[1])
        return (self.fc(joint), )
