"""lightly's DINO on our backbone."""
import copy
import math

import torch
import torch.nn.functional as F

from benchmarks.peers.common import Peer, config_views, interp_notes, view_args


class DINOPeer(Peer):
    """lightly DINO: DINOViewTransform views, DINOProjectionHead (frozen last layer via
    ``cancel_last_layer_gradients``), DINOLoss (teacher-temperature warm-up, centring), teacher
    by ``update_momentum`` with ``cosine_schedule`` after each step, SGD with gradient clipping
    (the recipe lightly's ResNet-50 benchmark uses)."""

    name = 'dino'

    def __init__(self, cfg):
        super().__init__(cfg)
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        model, head, loss = cfg.model, cfg.model.head, cfg.model.loss
        if head.get('num_layers', 3) != 3:
            raise ValueError('lightly DINOProjectionHead has 3 layers')
        if model.get('neck') and model.neck.type != 'GlobalAveragePooling':
            raise ValueError(f'unmapped DINO neck {model.neck}')
        self.freeze_iters = int(model.get('freeze_last_layer_iters', 0))

        def dino_head():
            return DINOProjectionHead(
                head.in_channels, head.hidden_channels, head.bottleneck_channels,
                head.out_channels, batch_norm=head.get('use_bn', False),
                freeze_last_layer=self.freeze_iters,
                norm_last_layer=head.get('norm_last_layer', True))

        self.head = dino_head()
        self.backbone_teacher = copy.deepcopy(self.backbone)
        # the teacher starts as a copy of the student (a weight-normed layer cannot be
        # deep-copied: a new head, loaded with the student's weights)
        self.head_teacher = dino_head()
        self.head_teacher.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.backbone_teacher)
        deactivate_requires_grad(self.head_teacher)
        self.num_global = loss.get('num_global_crops', 2)
        self.criterion = DINOLoss(
            output_dim=head.out_channels, warmup_teacher_temp=loss.warmup_teacher_temp,
            teacher_temp=loss.teacher_temp, warmup_teacher_temp_epochs=loss.warmup_iters,
            student_temp=loss.student_temp, center_momentum=loss.center_momentum)
        self.m0 = model.base_momentum  # our DINO: the teacher's momentum itself
        self.hparams.update(
            head=f'DINOProjectionHead({head.in_channels}, {head.hidden_channels}, '
                 f'{head.bottleneck_channels}, {head.out_channels}, batch_norm='
                 f"{head.get('use_bn', False)}, norm_last_layer="
                 f"{head.get('norm_last_layer', True)})",
            freeze_last_layer_iters=self.freeze_iters,
            loss=f'DINOLoss(teacher_temp {loss.warmup_teacher_temp} -> {loss.teacher_temp} '
                 f'over {loss.warmup_iters} iterations, student_temp {loss.student_temp}, '
                 f'center_momentum {loss.center_momentum})',
            teacher_momentum=f'cosine_schedule {self.m0} -> 1.0, after each step')

    def trained_modules(self):
        return [self.backbone, self.head]

    def transform(self):
        from lightly.transforms import DINOViewTransform
        from lightly.transforms.multi_view_transform import MultiViewTransform
        specs = config_views(self.cfg)
        views = []
        for s in specs:
            kw = view_args(s, self.normalize_views)
            kw['gaussian_blur'] = s['gaussian_blur']
            views.append(DINOViewTransform(crop_size=s['size'], crop_scale=s['scale'],
                                           solarization_prob=s['solarization_prob'], **kw))
        self.notes += interp_notes(specs, views)
        self.notes.append("views from DINOViewTransform: lightly's DINOTransform would jitter "
                          'the second global crop at half strength (it drops cj_strength there)')
        return MultiViewTransform(views), specs

    def loss(self, views, it, iters):
        g = torch.cat(views[:self.num_global])
        with torch.no_grad():
            t = self.head_teacher(self.backbone_teacher(g))
        s = [self.head(self.backbone(g))]
        if len(views) > self.num_global:
            s.append(self.head(self.backbone(torch.cat(views[self.num_global:]))))
        s = torch.cat(s)
        if it == iters - 1 or it % max(1, iters // 20) == 0:
            self._diagnose(t, it)
        return self.criterion(list(t.chunk(self.num_global)), list(s.chunk(len(views))),
                              epoch=it)

    @torch.no_grad()
    def _diagnose(self, t: torch.Tensor, it: int) -> None:
        """Teacher collapse check: mean per-sample entropy (-> 1: uniform collapse) and entropy
        of the batch-mean distribution (-> 0: one-prototype collapse), both / log K."""
        c = self.criterion
        temp = float(c.teacher_temp_schedule[it]) if it < c.warmup_teacher_temp_epochs \
            else c.teacher_temp
        p = F.softmax((t - c.center.flatten()) / temp, dim=-1)
        log_k = math.log(p.shape[-1])
        ent = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean()) / log_k
        pm = p.mean(0)
        ent_mean = float(-(pm * pm.clamp_min(1e-12).log()).sum()) / log_k
        self.diagnostics = dict(iteration=it, teacher_entropy=round(ent, 4),
                                teacher_batch_mean_entropy=round(ent_mean, 4))

    def before_optimizer_step(self, it):
        super().before_optimizer_step(it)  # clipping first, then the freeze (as ours)
        self.head.cancel_last_layer_gradients(it)

    def after_optimizer_step(self, it, iters):
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule
        m = cosine_schedule(it, iters, self.m0, 1.0)
        update_momentum(self.backbone, self.backbone_teacher, m=m)
        update_momentum(self.head, self.head_teacher, m=m)
