"""LooC: leave-one-out contrastive learning (Xiao, Wang, Efros & Darrell, ICLR 2021).

"What Should Not Be Contrastive in Contrastive Learning": one shared backbone, ``n + 1``
projection heads: one embedding space invariant to all ``n`` augmentations, and one per
augmentation that is invariant to all but that one, on MoCo v2's momentum encoder and queues.
The representation for a downstream task is the backbone's ``V`` or the concatenation of the
embedding spaces.
"""
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather
from mmengine.model import ExponentialMovingAverage
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.models.utils import batch_shuffle_ddp, batch_unshuffle_ddp
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS

REPRESENTATIONS = ('backbone', 'embeddings', 'backbone+embeddings')


class LooCRepresentation(nn.Module):
    """A 'backbone' for feature extraction that returns one of LooC's representations.

    ``'backbone'``: the backbone's outputs (``V``, pooled by the caller); ``'embeddings'``: the
    ``n + 1`` L2-normalised embeddings ``Z_0 .. Z_n`` of the online heads, concatenated (the
    paper's concatenation of the embedding sub-spaces); ``'backbone+embeddings'``: the
    L2-normalised pooled ``V`` followed by them.
    """

    def __init__(self, model: 'LooC', representation: str):
        super().__init__()
        if representation not in REPRESENTATIONS:
            raise ValueError(f'LooC: representation must be one of {REPRESENTATIONS} '
                             f'(got {representation!r})')
        self.model = model
        self.representation = representation

    def forward(self, inputs: torch.Tensor):
        feats = self.model.backbone(inputs)
        if self.representation == 'backbone':
            return feats
        parts = [F.normalize(h(feats)[0], dim=1) for h in self.model.heads]
        if self.representation == 'backbone+embeddings':
            pooled = F.adaptive_avg_pool2d(feats[-1], 1).flatten(1)
            parts.insert(0, F.normalize(pooled, dim=1))
        return (torch.cat(parts, dim=1), )


@MODELS.register_module()
class LooC(BaseSelfSupervisor):
    r"""Leave-one-out contrastive learning on MoCo v2's machinery.

    Inputs: the ``n + 2`` views of ``LooCViews``: the query ``q``, ``k_0`` (every augmentation
    drawn anew) and ``k_1 .. k_n`` (``k_i`` shares augmentation ``i``'s parameters with ``q``).
    ``q`` goes through the online backbone and every head ``h_s`` (``s = 0..n``); the keys
    through the momentum encoder (an EMA of backbone and heads, batch-shuffled BN as MoCo),
    each key view into every space; ``LooCLoss`` contrasts them (space 0: every key a positive;
    space ``i``: only ``k_i``, the image's other keys are negatives) against one queue per space.
    Space 0 enqueues ``k_0``, space ``i`` enqueues ``k_i``.

    Args:
        backbone: backbone config.
        neck: config of ONE projection head (mmpretrain's ``MoCoV2Neck``); ``num_augmentations
            + 1`` copies are built, one per embedding space.
        num_augmentations: ``n``, the augmentations ``LooCViews`` leaves out.
        loss: ``LooCLoss`` config.
        queue_len: keys per space's queue.
        feat_dim: the heads' output size.
        momentum: EMA coefficient of the momentum encoder, mmengine's convention
            (``1 - 0.999`` as MoCo v2).
        representation: what :meth:`extract_feat` returns, one of :data:`REPRESENTATIONS`
            (``'backbone'``: mmpretrain's default, what every tool evaluates).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 num_augmentations: int,
                 loss: dict = dict(type='LooCLoss', temperature=0.2),
                 queue_len: int = 16384,
                 feat_dim: int = 128,
                 momentum: float = 0.001,
                 representation: str = 'backbone',
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(backbone=backbone, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if num_augmentations < 1:
            raise ValueError(f'LooC: num_augmentations must be >= 1 (got {num_augmentations})')
        if representation not in REPRESENTATIONS:
            raise ValueError(f'LooC: representation must be one of {REPRESENTATIONS} '
                             f'(got {representation!r})')
        self.num_augmentations = int(num_augmentations)
        self.num_spaces = self.num_augmentations + 1
        self.heads = nn.ModuleList([MODELS.build(neck) for _ in range(self.num_spaces)])
        self.loss_module = MODELS.build(loss)
        self.representation = representation
        self.encoder_k = ExponentialMovingAverage(
            nn.ModuleList([self.backbone, self.heads]), momentum)
        self.queue_len = int(queue_len)
        self.register_buffer(
            'queue', F.normalize(torch.randn(self.num_spaces, feat_dim, self.queue_len), dim=1))
        self.register_buffer('queue_ptr', torch.zeros(1, dtype=torch.long))

    def representation_encoder(self, representation: Optional[str] = None) -> nn.Module:
        """The module feature extraction runs instead of ``backbone`` (see
        :class:`LooCRepresentation`); default: the model's ``representation``."""
        return LooCRepresentation(self, representation or self.representation)

    def extract_feat(self, inputs: torch.Tensor):
        return self.representation_encoder()(inputs)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """``keys``: ``(S, B, D)``, gathered over the ranks along ``B`` before enqueueing."""
        keys = torch.cat(all_gather(keys.contiguous()), dim=1)
        batch = keys.shape[1]
        if self.queue_len % batch:
            raise ValueError(f'LooC: queue_len={self.queue_len} must be a multiple of the global '
                             f'batch ({batch} = batch size x GPUs); set model.queue_len')
        ptr = int(self.queue_ptr)
        self.queue[:, :, ptr:ptr + batch] = keys.transpose(1, 2)
        self.queue_ptr[0] = (ptr + batch) % self.queue_len

    def _views(self, inputs) -> List[torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_spaces + 1:
            got = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError(f'LooC with num_augmentations={self.num_augmentations} expects '
                             f'{self.num_spaces + 1} views (query, k_0, one key per '
                             f'augmentation, from LooCViews); got {got}')
        return list(inputs)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        views = self._views(inputs)
        b, s = views[0].shape[0], self.num_spaces
        feats_q = self.backbone(views[0])
        query = torch.stack([F.normalize(h(feats_q)[0], dim=1) for h in self.heads])
        with torch.no_grad():
            self.encoder_k.update_parameters(nn.ModuleList([self.backbone, self.heads]))
            backbone_k, heads_k = self.encoder_k.module
            keys_in, unshuffle = batch_shuffle_ddp(torch.cat(views[1:]))
            feats_k = backbone_k(keys_in)
            keys = torch.stack([batch_unshuffle_ddp(F.normalize(h(feats_k)[0], dim=1), unshuffle)
                                for h in heads_k])  # (space, key view * B, D)
            keys = keys.reshape(s, s, b, -1)  # (space, key view, B, D)
        loss = self.loss_module(query, keys, self.queue.clone().detach())
        # space 0 enqueues k_0, space i enqueues k_i: the diagonal of (space, key view)
        self._dequeue_and_enqueue(keys[torch.arange(s), torch.arange(s)])
        return dict(loss=loss)
