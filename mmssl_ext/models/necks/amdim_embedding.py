"""AMDIM's embedding heads: global and local backbone features into one NCE space."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS


class AMDIMEmbedding(nn.Module):
    """A residual 1x1-conv embedding: ``norm(shortcut(x) + conv(relu(conv(x))))``.

    The shape of AMDIM's small embedding networks (``FakeRKHSConvNet`` in amdim-public's
    ``model.py``): a linear 1x1 shortcut plus a two-layer 1x1 branch, one output norm.  The
    branch's second conv starts at zero, so at initialisation the head is the linear shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 norm_cfg: Optional[dict] = dict(type='BN')) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 1, bias=False))
        nn.init.zeros_(self.branch[2].weight)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1] if norm_cfg else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.shortcut(x) + self.branch(x))


@MODELS.register_module()
class AMDIMEmbeddingNeck(BaseModule):
    """Backbone outputs -> AMDIM's three embeddings in one ``out_channels``-d space.

    AMDIM's encoder gives a 1 x 1 global feature and 5 x 5 and 7 x 7 local maps.  On an
    mmpretrain backbone the two local maps are the backbone outputs at ``local_indices``
    (positions in its ``out_indices`` tuple: the larger map plays the 7 x 7 role, the smaller
    one the 5 x 5 role) and the global feature is the LAST output, average-pooled.  Each goes
    through its own :class:`AMDIMEmbedding` (1x1 convs, so a map keeps its size)::

        inputs: tuple of B x C_i x h_i x w_i
        r7 = emb7(inputs[local_indices[0]])     B x D x h7 x w7
        r5 = emb5(inputs[local_indices[1]])     B x D x h5 x w5
        r1 = emb1(avgpool(inputs[-1]))          B x D

    Returns ``(r7, r5, r1)``: the global embedding last, where mmssl_ext's hooks look.

    Args:
        in_channels: channels of ``(inputs[local_indices[0]], inputs[local_indices[1]],
            inputs[-1])``; :class:`~mmssl_ext.models.algorithms.AMDIM` reads them from its
            backbone when the config leaves them out.
        out_channels: ``D`` (AMDIM's ``n_rkhs``).
        local_indices: positions of the 7 x 7-role and 5 x 5-role maps in the backbone outputs.
        norm_cfg: output norm of each embedding (AMDIM: BatchNorm).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int = 1536,
                 local_indices: Sequence[int] = (0, 1),
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = tuple(int(c) for c in in_channels)
        if len(in_channels) != 3 or min(in_channels) < 1:
            raise ValueError(f'AMDIMEmbeddingNeck: in_channels must be 3 positive ints (7x7-role '
                             f'map, 5x5-role map, global), got {in_channels!r}')
        if len(local_indices) != 2:
            raise ValueError(f'AMDIMEmbeddingNeck: local_indices must name 2 backbone outputs '
                             f'(7x7 role, 5x5 role), got {local_indices!r}')
        self.in_channels = in_channels
        self.out_channels = int(out_channels)
        self.local_indices = tuple(int(i) for i in local_indices)
        self.emb7, self.emb5, self.emb1 = (AMDIMEmbedding(c, self.out_channels, norm_cfg)
                                           for c in in_channels)

    def forward(self, inputs: Sequence[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or any(x.ndim != 4 for x in inputs):
            raise ValueError('AMDIMEmbeddingNeck: needs a tuple of B x C x h x w backbone maps '
                             '(a ResNet with out_indices naming the local stages and the last)')
        i7, i5 = self.local_indices
        if not (-len(inputs) <= min(i7, i5) and max(i7, i5) < len(inputs)):
            raise ValueError(f'AMDIMEmbeddingNeck: local_indices={self.local_indices} but the '
                             f'backbone gives {len(inputs)} outputs; set backbone.out_indices '
                             f'to include both local stages (e.g. (2, 3) for a ResNet)')
        got = (inputs[i7].shape[1], inputs[i5].shape[1], inputs[-1].shape[1])
        if got != self.in_channels:
            raise ValueError(f'AMDIMEmbeddingNeck: in_channels={self.in_channels} but the '
                             f'backbone maps have {got} channels; leave in_channels unset')
        r7 = self.emb7(inputs[i7])
        r5 = self.emb5(inputs[i5])
        r1 = self.emb1(inputs[-1].mean(dim=(2, 3), keepdim=True)).flatten(1)
        return r7, r5, r1
