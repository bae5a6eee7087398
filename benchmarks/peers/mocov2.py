"""lightly's MoCo v2 on our backbone."""
import copy

import torch

from benchmarks.peers.common import Peer


class MoCoV2Peer(Peer):
    """lightly MoCo v2: MoCoV2Transform, MoCoProjectionHead, NTXentLoss with a memory bank (the
    queue), momentum encoder by ``update_momentum`` (constant), BN shuffle by
    ``batch_shuffle`` (as in lightly's MoCo v2 benchmark)."""

    name = 'mocov2'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        model, neck = cfg.model, cfg.model.neck
        if neck.type != 'MoCoV2Neck':
            raise ValueError(f'unmapped MoCo neck {neck}')
        self.head = MoCoProjectionHead(neck.in_channels, neck.hid_channels, neck.out_channels)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.head_momentum = copy.deepcopy(self.head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.head_momentum)
        self.m = 1.0 - model.momentum  # mmpretrain's EMA momentum is the weight of the new value
        self.criterion = NTXentLoss(temperature=model.head.temperature,
                                    memory_bank_size=(model.queue_len, neck.out_channels))
        self.hparams.update(
            projection=f'MoCoProjectionHead({neck.in_channels}, {neck.hid_channels}, '
                       f'{neck.out_channels})',
            loss=f'NTXentLoss(temperature={model.head.temperature}, '
                 f'memory_bank_size=({model.queue_len}, {neck.out_channels}))',
            key_encoder_momentum=self.m)

    def trained_modules(self):
        return [self.backbone, self.head]

    def transform(self):
        from lightly.transforms import MoCoV2Transform
        return self.same_two_views(MoCoV2Transform, 'MoCo v2')

    def loss(self, views, it, iters):
        from lightly.models.utils import batch_shuffle, batch_unshuffle, update_momentum
        update_momentum(self.backbone, self.backbone_momentum, m=self.m)
        update_momentum(self.head, self.head_momentum, m=self.m)
        query = self.head(self.backbone(views[0]))
        with torch.no_grad():
            x, shuffle = batch_shuffle(views[1])
            key = batch_unshuffle(self.head_momentum(self.backbone_momentum(x)), shuffle)
        return self.criterion(query, key)
