"""lightly's BYOL on our backbone."""
import copy

import torch

from benchmarks.peers.common import Peer, config_views, interp_notes, min_scale, view_args


class BYOLPeer(Peer):
    """lightly BYOL: BYOLView1/2Transform, BYOLProjectionHead + BYOLPredictionHead,
    NegativeCosineSimilarity (symmetric, x2 as in lightly's benchmark and ours), LARS, target by
    ``update_momentum`` with ``cosine_schedule`` towards 1."""

    name = 'byol'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        model, neck, pred = cfg.model, cfg.model.neck, cfg.model.head.predictor
        if model.head.loss.get('shift_factor', 0.0) != 0 or model.head.loss.get(
                'scale_factor', 1.0) != 1:
            raise ValueError(f'unmapped BYOL loss {model.head.loss}')
        self.projection = BYOLProjectionHead(neck.in_channels, neck.hid_channels,
                                             neck.out_channels)
        self.prediction = BYOLPredictionHead(pred.in_channels, pred.hid_channels,
                                             pred.out_channels)
        self.backbone_target = copy.deepcopy(self.backbone)
        self.projection_target = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.backbone_target)
        deactivate_requires_grad(self.projection_target)
        self.m0 = 1.0 - model.base_momentum  # mmpretrain CosineEMA: weight of the new value
        self.criterion = NegativeCosineSimilarity()
        self.hparams.update(
            projection=f'BYOLProjectionHead({neck.in_channels}, {neck.hid_channels}, '
                       f'{neck.out_channels})',
            prediction=f'BYOLPredictionHead({pred.in_channels}, {pred.hid_channels}, '
                       f'{pred.out_channels})',
            loss='2 * (NegativeCosineSimilarity(p0, z1) + NegativeCosineSimilarity(p1, z0))',
            target_momentum=f'cosine_schedule {self.m0} -> 1.0')
        self.notes.append('projector / predictor last linear layer has a bias in lightly '
                          '(BYOLProjectionHead / BYOLPredictionHead), none in ours')

    def trained_modules(self):
        return [self.backbone, self.projection, self.prediction]

    def transform(self):
        from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform
        specs = config_views(self.cfg)
        if len(specs) != 2:
            raise ValueError('BYOL: expected two views')
        views = [cls(input_size=s['size'], min_scale=min_scale(s),
                     solarization_prob=s['solarization_prob'],
                     **view_args(s, self.normalize_views))
                 for cls, s in zip((BYOLView1Transform, BYOLView2Transform), specs)]
        t = BYOLTransform(view_1_transform=views[0], view_2_transform=views[1])
        self.notes += interp_notes(specs, t.transforms)
        return t, specs

    def loss(self, views, it, iters):
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule
        m = cosine_schedule(it, iters, self.m0, 1.0)
        update_momentum(self.backbone, self.backbone_target, m=m)
        update_momentum(self.projection, self.projection_target, m=m)
        p0 = self.prediction(self.projection(self.backbone(views[0])))
        p1 = self.prediction(self.projection(self.backbone(views[1])))
        with torch.no_grad():
            z0 = self.projection_target(self.backbone_target(views[0]))
            z1 = self.projection_target(self.backbone_target(views[1]))
        return 2 * self.criterion(p0, z1) + 2 * self.criterion(p1, z0)
