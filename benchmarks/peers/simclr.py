"""lightly's SimCLR on our backbone."""
import torch

from benchmarks.peers.common import Peer


class SimCLRPeer(Peer):
    """lightly SimCLR: SimCLRTransform, SimCLRProjectionHead, NTXentLoss (in-batch negatives),
    LARS, both views through the backbone in one batch (as in lightly's benchmark and ours)."""

    name = 'simclr'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        neck, head = cfg.model.neck, cfg.model.head
        if neck.type != 'NonLinearNeck' or not neck.get('with_last_bn', True) or neck.get(
                'with_bias', False):
            raise ValueError(f'unmapped SimCLR neck {neck}')
        self.head = SimCLRProjectionHead(neck.in_channels, neck.hid_channels, neck.out_channels,
                                         num_layers=neck.get('num_layers', 2), batch_norm=True)
        self.criterion = NTXentLoss(temperature=head.temperature)
        self.hparams.update(projection=f'SimCLRProjectionHead({neck.in_channels}, '
                            f'{neck.hid_channels}, {neck.out_channels}, BN)',
                            loss=f'NTXentLoss(temperature={head.temperature})')

    def trained_modules(self):
        return [self.backbone, self.head]

    def transform(self):
        from lightly.transforms import SimCLRTransform
        return self.same_two_views(SimCLRTransform, 'SimCLR')

    def loss(self, views, it, iters):
        z = self.head(self.backbone(torch.cat(views)))
        z0, z1 = z.chunk(2)
        return self.criterion(z0, z1)
