"""DINO: self-distillation with no labels (Caron et al., "Emerging Properties in Self-Supervised
Vision Transformers", ICCV 2021)."""
import weakref
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.models.utils import CosineEMA
from mmpretrain.structures import DataSample
from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                   register_optimizer_step_pre_hook)

from mmssl_ext.registry import MODELS


def _remove_hooks(handles) -> None:
    for handle in handles:
        handle.remove()


def _teacher_from_a_student_checkpoint(model: 'MMSSLDINO', incompatible_keys) -> None:
    """A checkpoint without the teacher (a converted backbone given to ``get_model`` /
    ``load_checkpoint``) starts the teacher as a copy of the loaded student, as DINO's own
    initialisation does, instead of leaving it random; its keys are then not missing."""
    missing = incompatible_keys.missing_keys
    teacher = [k for k in missing if k.startswith('teacher.') or '.teacher.' in k]
    if teacher and len(teacher) == len(model.teacher.state_dict()):
        model._sync_teacher()
        for k in teacher:
            missing.remove(k)


@MODELS.register_module()
class MMSSLDINO(BaseSelfSupervisor):
    r"""DINO with a student, an EMA teacher, multi-crop, centring and sharpening.

    Student = backbone (+ neck) + :class:`~mmssl_ext.models.heads.MMSSLDINOHead`; teacher = the same
    network, a :class:`mmpretrain.models.utils.CosineEMA` copy of the student (parameters with
    ``requires_grad=False``, run under ``torch.no_grad``).  Per step, with crops
    ``x_1..x_V`` of every image (``x_1, x_2`` the global crops, then the local ones)::

        s_v = student(x_v)   for all V crops; the backbone runs once per resolution (the crops of
                             one size are concatenated), the head once on everything
        t_g = teacher(x_g)   for the 2 global crops only
        loss = DINOLoss(s, t)        mean over g, v != g of  H(softmax((t_g - c) / tau_t),
                                                              softmax(s_v / tau_s))
        c <- 0.9 c + 0.1 mean(t)     (inside DINOLoss; all-reduced under DDP)

    and after every optimizer step of the student::

        theta_t <- lambda theta_t + (1 - lambda) theta_s,
        lambda  = 1 - (1 - base_momentum) * (cos(pi k / K) + 1) / 2     (0.996 -> 1)

    with ``k`` the number of teacher updates so far (1 at the first) and ``K`` the run's
    ``max_iters``; the teacher's buffers (BatchNorm statistics) are copied from the student.

    Defaults follow the paper / official code: momentum 0.996 -> 1 (cosine), student temperature
    0.1, centre momentum 0.9, last layer of the head frozen during the first epoch
    (``freeze_last_layer_iters``, in optimizer steps); the teacher temperature and its warm-up
    (per epoch as the official code, or per step) are the loss's.

    **When the teacher moves.**  The EMA update and the last-layer freeze are tied to the
    optimizer step itself, through torch's optimizer step hooks (registered when the model is
    built; they act only on an optimizer that holds this model's head parameters): the freeze
    drops the last layer's gradients (``grad = None``) right before ``optimizer.step()``, after
    gradient clipping, as the official ``cancel_gradients_last_layer``; the teacher update runs
    right after ``optimizer.step()``.  So the teacher is updated exactly once per real student
    update, under a single process and under DDP (``MMDistributedDataParallel.train_step`` does
    not call the model's ``train_step``), and not at all when a step is skipped (gradient
    accumulation, an AMP step with inf/nan gradients).  The step count ``k - 1`` (teacher buffer
    ``teacher.steps``, saved in checkpoints) also drives the teacher-temperature warm-up and the
    freeze, so a resumed run continues exactly.

    The teacher has no stochastic depth / dropout (the official teacher is built without
    ``drop_path_rate``); otherwise it runs in the student's mode (BatchNorm on batch statistics
    while training, as in the official ResNet-50 run).

    Args:
        backbone: backbone config (mmpretrain ``ResNet`` or ``VisionTransformer`` with
            ``out_type='cls_token'``; anything returning (a tuple of) features).
        head: :class:`MMSSLDINOHead` config.
        loss: :class:`MMSSLDINOLoss` config (temperatures, warm-up, centre momentum).
        neck: optional neck between backbone and head, e.g. ``dict(type='GlobalAveragePooling')``
            for a ResNet (its feature maps must be pooled); ``None`` for a ViT's class token.
        base_momentum: teacher momentum at the start (0.996); cosine-annealed to 1.
        freeze_last_layer_iters: optimizer steps during which the head's last layer is frozen
            (the paper: one epoch).
        iters_per_epoch: optimizer steps per epoch, for the loss's per-epoch teacher-temperature
            warm-up (``loss.warmup_epochs``); ``None`` takes the run's ``max_iters //
            max_epochs`` (an epoch-based run; the Runner records both).
        head_per_crop_size: call the student's head once per crop size (global crops, then
            local crops), as lightly's DINO does, instead of once on the features of all crops
            (False, the official ``MultiCropWrapper``).  It matters only for a head with
            BatchNorm, whose batch statistics are then those of one crop size (measured in
            ``configs/dino/README.md``).
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 loss: dict,
                 neck: Optional[dict] = None,
                 base_momentum: float = 0.996,
                 freeze_last_layer_iters: int = 0,
                 head_per_crop_size: bool = False,
                 iters_per_epoch: Optional[int] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(backbone=backbone, neck=neck, head=head, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if head is None or not hasattr(self.head, 'last_layer'):
            raise ValueError('DINO: head must be an MMSSLDINOHead (with a last_layer), '
                             f'got {head!r}')
        if not 0.0 < base_momentum < 1.0:
            raise ValueError(f'DINO: base_momentum must be in (0, 1), got {base_momentum}')
        if int(freeze_last_layer_iters) < 0:
            raise ValueError('DINO: freeze_last_layer_iters must be >= 0, got '
                             f'{freeze_last_layer_iters}')
        self.dino_loss = MODELS.build(loss)
        if self.dino_loss.out_channels != self.head.out_channels:
            raise ValueError(f'DINO: loss.out_channels={self.dino_loss.out_channels} differs '
                             f'from head.out_channels={self.head.out_channels}')
        if iters_per_epoch is not None and int(iters_per_epoch) < 1:
            raise ValueError(f'DINO: iters_per_epoch must be >= 1 or None, got {iters_per_epoch}')
        self.iters_per_epoch = None if iters_per_epoch is None else int(iters_per_epoch)
        self.base_momentum = base_momentum
        self.freeze_last_layer_iters = int(freeze_last_layer_iters)
        self.head_per_crop_size = bool(head_per_crop_size)
        # CosineEMA's momentum is the weight of the *new* value: 1 - teacher momentum
        self.teacher = CosineEMA(self._student(), momentum=1.0 - base_momentum,
                                 end_momentum=0.0)
        for m in self.teacher.module.modules():  # no stochastic depth / dropout in the teacher
            if hasattr(m, 'drop_prob'):
                m.drop_prob = 0.0
            elif isinstance(m, nn.Dropout):
                m.p = 0.0
        self._sync_teacher()
        self._register_optimizer_hooks()
        self.register_load_state_dict_post_hook(_teacher_from_a_student_checkpoint)

    # ------------------------------------------------------------------ student / teacher
    def _student(self) -> nn.Sequential:
        """The student as one module (the same sub-modules, no copy): backbone, neck, head."""
        parts = [self.backbone] + ([self.neck] if self.with_neck else []) + [self.head]
        return nn.Sequential(*parts)

    @torch.no_grad()
    def _sync_teacher(self) -> None:
        """teacher <- student (parameters and buffers); the next update is an EMA step."""
        self.teacher.steps.zero_()
        self.teacher.update_parameters(self._student())  # steps == 0: a plain copy

    def init_weights(self) -> None:
        super().init_weights()
        self._sync_teacher()  # the teacher starts as the initialised student

    @property
    def num_steps(self) -> int:
        """Optimizer steps (= teacher updates) taken so far."""
        return int(self.teacher.steps) - 1

    def current_epoch(self) -> int:
        """The epoch of the current step (0-based): ``num_steps // iters_per_epoch``, from the
        step count saved in checkpoints, so a resumed run continues the schedule exactly."""
        per_epoch = self.iters_per_epoch
        if per_epoch is None:
            hub = MessageHub.get_current_instance()
            max_iters, max_epochs = hub.get_info('max_iters'), hub.get_info('max_epochs')
            if not max_iters or not max_epochs or max_epochs <= 1:
                raise RuntimeError(
                    'DINO: the per-epoch teacher-temperature warm-up (loss.warmup_epochs) needs '
                    'the epoch length: an epoch-based run (the Runner records max_iters and '
                    'max_epochs) or model.iters_per_epoch; an iteration-based run can warm up '
                    'per step with loss.warmup_iters')
            per_epoch = max(1, int(max_iters) // int(max_epochs))
        return max(self.num_steps, 0) // per_epoch

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step of the teacher towards the student (called after optimizer.step())."""
        if MessageHub.get_current_instance().get_info('max_iters') is None:
            raise RuntimeError(
                "DINO: the teacher's momentum schedule needs the run length: "
                "MessageHub.get_current_instance().update_info('max_iters', N) (the Runner "
                'does this)')
        self.teacher.update_parameters(self._student())

    def _cancel_last_layer_grads(self) -> None:
        if self.num_steps < self.freeze_last_layer_iters:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def _holds_head_params(self, optimizer: torch.optim.Optimizer) -> bool:
        probe = next(self.head.mlp.parameters())
        return any(p is probe for group in optimizer.param_groups for p in group['params'])

    def _register_optimizer_hooks(self) -> None:
        """Freeze (before) and teacher update (after) around every step of our optimizer."""
        ref = weakref.ref(self)  # the hooks must not keep the model alive

        def before_step(optimizer, args, kwargs):
            model = ref()
            if model is not None and model._holds_head_params(optimizer):
                model._cancel_last_layer_grads()

        def after_step(optimizer, args, kwargs):
            model = ref()
            if model is not None and model._holds_head_params(optimizer):
                model.update_teacher()

        handles = (register_optimizer_step_pre_hook(before_step),
                   register_optimizer_step_post_hook(after_step))
        weakref.finalize(self, _remove_hooks, handles)

    # ------------------------------------------------------------------ forward / loss
    def _check_views(self, inputs) -> List[torch.Tensor]:
        num_global = self.dino_loss.num_global_crops
        if not isinstance(inputs, (list, tuple)) or len(inputs) < max(2, num_global):
            n = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError(
                f'DINO expects a list of crops per sample (the {num_global} global crops first, '
                f'then local crops), got {n}; use MultiView(num_views=[{num_global}, n_local], '
                '...) in the pipeline')
        batch = inputs[0].shape[0]
        for i, view in enumerate(inputs):
            if view.ndim != 4 or view.shape[0] != batch:
                raise ValueError(f'DINO: crop {i} has shape {tuple(view.shape)}; expected '
                                 f'({batch}, C, H, W) like crop 0')
        for i in range(1, num_global):
            if inputs[i].shape != inputs[0].shape:
                raise ValueError(f'DINO: the global crops must share one size; crop {i} is '
                                 f'{tuple(inputs[i].shape)}, crop 0 {tuple(inputs[0].shape)}')
        return list(inputs)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        if self.with_neck:
            feats = self.neck(feats)
        return feats[-1] if isinstance(feats, (tuple, list)) else feats

    @staticmethod
    def _size_runs(views: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """The crops concatenated per run of consecutive crops of one size (crop-major)."""
        runs, start = [], 0
        while start < len(views):
            end = start + 1
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            runs.append(torch.cat(views[start:end]))
            start = end
        return runs

    def student_forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Student logits ``(V * B, K)``, crop-major: one backbone call per run of equal sizes,
        then the head once on all features (the official ``MultiCropWrapper``: a head with
        BatchNorm normalises global and local crops with one set of batch statistics), or once
        per run with ``head_per_crop_size``."""
        feats = [self._features(x) for x in self._size_runs(views)]
        if self.head_per_crop_size:
            return torch.cat([self.head(f) for f in feats])
        return self.head(torch.cat(feats))

    @torch.no_grad()
    def teacher_forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Teacher logits ``(G * B, K)`` of the global crops."""
        return self.teacher(torch.cat(views[:self.dino_loss.num_global_crops]))

    @torch.no_grad()
    def collapse_outputs(self, inputs) -> Dict[str, torch.Tensor]:
        """``CollapseMonitorHook``'s view of the first global crop: the student's features
        and softmax, and the teacher's centred, sharpened softmax (the loss's targets)."""
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        loss, feats = self.dino_loss, self._features(x)
        epoch = self.current_epoch() if loss.warmup_epochs else None
        temp = loss.teacher_temperature(self.num_steps, epoch)
        return dict(embedding=feats,
                    probs=torch.softmax(self.head(feats).float() / loss.student_temp, dim=-1),
                    teacher_probs=torch.softmax((self.teacher(x).float() - loss.center) / temp,
                                                dim=-1))

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        views = self._check_views(inputs)
        step = self.num_steps
        student_out = self.student_forward(views)
        teacher_out = self.teacher_forward(views)
        epoch = self.current_epoch() if self.dino_loss.warmup_epochs else None
        loss = self.dino_loss(student_out, teacher_out, step=step, epoch=epoch)
        temp = self.dino_loss.teacher_temperature(step, epoch)
        # only 'loss' is optimised; logged scalars must not contain 'loss' (mmengine sums those)
        return dict(loss=loss, teacher_temp=torch.tensor(temp, device=loss.device))


# deprecated alias of the old class name, for one release (mmpretrain's projects/dino registers
# its own DINO into the same registry, so ours is registered as MMSSLDINO)
DINO = MMSSLDINO
