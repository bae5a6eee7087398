"""DINO's self-distillation loss with centring and sharpening (Caron et al., ICCV 2021)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_world_size

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class MMSSLDINOLoss(nn.Module):
    r"""Cross-entropy between the teacher's centred, sharpened softmax and the student's softmax.

    The teacher sees the ``G`` global crops (``G = 2``), the student all ``V`` crops (global and
    local).  With ``t_g`` the teacher logits of global crop ``g``, ``s_v`` the student logits of
    crop ``v`` and ``c`` the centre::

        P_t(g) = softmax((t_g - c) / tau_t)          centring, then sharpening (tau_t small)
        P_s(v) = softmax(s_v / tau_s)

    .. math::

        \mathcal{L} = \frac{1}{G (V - 1)} \sum_{g=1}^{G} \sum_{v \ne g}
            \frac{1}{B} \sum_{b=1}^{B} -P_t(g)_b \cdot \log P_s(v)_b

    (a crop is never compared with itself).  After the loss the centre moves towards the batch
    mean of the teacher logits, over all ``G`` global crops and, under DDP, over all ranks::

        c <- m * c + (1 - m) * mean_{rank, g, b} t_{g, b}          (m = 0.9)

    The teacher temperature can be warmed up linearly from ``warmup_teacher_temp`` to
    ``teacher_temp``, then held: per epoch over ``warmup_epochs`` epochs, as the official code
    (``np.linspace(warmup_teacher_temp, teacher_temp, warmup_epochs)[epoch]``), or per step over
    ``warmup_iters`` steps (for iteration-based runs).  The official defaults (``main_dino.py``)
    are 0.04 without warm-up; its "boosted" ViT-S run warms up from 0.04 to 0.07 over 30 epochs.
    The student temperature is 0.1.

    Args:
        out_channels: ``K``, the number of prototypes (the head's output size, 65536 in the paper).
        num_global_crops: ``G``, the crops the teacher sees (the first ``G`` of the student's).
        student_temp: ``tau_s`` (0.1).
        teacher_temp: ``tau_t`` after the warm-up (0.04 - 0.07 in the paper; 0.07 with warm-up).
        warmup_teacher_temp: ``tau_t`` at the start of the warm-up (0.04).
        warmup_iters: length of a per-step linear warm-up in optimizer steps.
        center_momentum: ``m`` (0.9).
        warmup_epochs: length of the official per-epoch warm-up in epochs (``forward`` then needs
            the ``epoch``).  At most one of ``warmup_iters`` / ``warmup_epochs`` is non-zero;
            both 0: ``teacher_temp`` from the start.

    Shapes:
        student_output: ``(V * B, K)`` logits, crop-major (all images of crop 0, then crop 1, ...).
        teacher_output: ``(G * B, K)`` logits of the global crops, in the same order.
        output: scalar.

    Example:
        >>> loss_fn = MMSSLDINOLoss(out_channels=65536, warmup_epochs=30)
        >>> loss = loss_fn(student(torch.cat(crops)), teacher(torch.cat(crops[:2])),
        ...                step=it, epoch=epoch)
    """

    def __init__(self,
                 out_channels: int,
                 num_global_crops: int = 2,
                 student_temp: float = 0.1,
                 teacher_temp: float = 0.07,
                 warmup_teacher_temp: float = 0.04,
                 warmup_iters: int = 0,
                 center_momentum: float = 0.9,
                 warmup_epochs: int = 0):
        super().__init__()
        if int(out_channels) < 1:
            raise ValueError(f'DINOLoss: out_channels must be >= 1, got {out_channels}')
        if int(num_global_crops) < 1:
            raise ValueError(f'DINOLoss: num_global_crops must be >= 1, got {num_global_crops}')
        for name, value in (('student_temp', student_temp), ('teacher_temp', teacher_temp),
                            ('warmup_teacher_temp', warmup_teacher_temp)):
            if not value > 0:
                raise ValueError(f'DINOLoss: {name} must be > 0, got {value}')
        if int(warmup_iters) < 0 or int(warmup_epochs) < 0:
            raise ValueError(f'DINOLoss: warmup_iters and warmup_epochs must be >= 0, got '
                             f'{warmup_iters} and {warmup_epochs}')
        if int(warmup_iters) and int(warmup_epochs):
            raise ValueError('DINOLoss: give warmup_iters (per step) or warmup_epochs (per '
                             f'epoch, official), not both; got {warmup_iters} and {warmup_epochs}')
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f'DINOLoss: center_momentum must be in [0, 1], got {center_momentum}')
        self.out_channels = int(out_channels)
        self.num_global_crops = int(num_global_crops)
        self.student_temp = float(student_temp)
        self.teacher_temp = float(teacher_temp)
        self.warmup_teacher_temp = float(warmup_teacher_temp)
        self.warmup_iters = int(warmup_iters)
        self.warmup_epochs = int(warmup_epochs)
        self.center_momentum = float(center_momentum)
        self.register_buffer('center', torch.zeros(1, self.out_channels))

    def teacher_temperature(self, step: int, epoch: Optional[int] = None) -> float:
        """``tau_t`` at optimisation step ``step`` / in epoch ``epoch`` (0-based; the epoch is
        needed, and only used, with ``warmup_epochs``)."""
        if step < 0:
            raise ValueError(f'DINOLoss: step must be >= 0, got {step}')
        if self.warmup_epochs:
            if epoch is None or epoch < 0:
                raise ValueError('DINOLoss: the per-epoch warm-up (warmup_epochs='
                                 f'{self.warmup_epochs}) needs the epoch (>= 0), got {epoch}')
            return self._linear_warmup(epoch, self.warmup_epochs)
        return self._linear_warmup(step, self.warmup_iters)

    def _linear_warmup(self, position: int, length: int) -> float:
        """``np.linspace(warmup_teacher_temp, teacher_temp, length)[position]``, then
        ``teacher_temp``."""
        if position >= length:
            return self.teacher_temp
        if length == 1:
            return self.warmup_teacher_temp
        frac = position / (length - 1)
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * frac

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor,
                step: int = 0, epoch: Optional[int] = None) -> torch.Tensor:
        num_crops, batch = self._check(student_output, teacher_output)
        student_logp = F.log_softmax(student_output.float() / self.student_temp, dim=-1)
        student_logp = student_logp.view(num_crops, batch, -1)
        teacher_temp = self.teacher_temperature(step, epoch)
        teacher_p = F.softmax((teacher_output.detach().float() - self.center) / teacher_temp,
                              dim=-1).view(self.num_global_crops, batch, -1)
        # all (g, v) pairs with v != g: sum_v (-P_t(g) . log P_s(v)) minus the v == g term
        cross = -torch.einsum('gbk,vbk->gv', teacher_p, student_logp) / batch  # G x V
        same = torch.diagonal(cross[:, :self.num_global_crops])
        loss = (cross.sum() - same.sum()) / (self.num_global_crops * (num_crops - 1))
        if self.training:
            self.update_center(teacher_output)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """``c <- m c + (1 - m) mean(teacher_output)``, the mean over all ranks' rows."""
        stats = torch.cat([teacher_output.detach().float().sum(dim=0),
                           teacher_output.new_tensor([teacher_output.shape[0]]).float()])
        if get_world_size() > 1:
            all_reduce(stats, op='sum')  # sums and row counts: exact even for unequal batches
        batch_center = (stats[:-1] / stats[-1]).view_as(self.center)
        self.center.mul_(self.center_momentum).add_(batch_center.to(self.center.dtype),
                                                    alpha=1 - self.center_momentum)

    def _check(self, student_output: torch.Tensor, teacher_output: torch.Tensor):
        for name, t in (('student_output', student_output), ('teacher_output', teacher_output)):
            if t.ndim != 2 or t.shape[1] != self.out_channels:
                raise ValueError(f'DINOLoss: {name} must have shape (N, {self.out_channels}); '
                                 f'got {tuple(t.shape)}')
        rows_t, rows_s = teacher_output.shape[0], student_output.shape[0]
        if rows_t == 0 or rows_t % self.num_global_crops:
            raise ValueError(f'DINOLoss: teacher_output has {rows_t} rows, not a positive multiple '
                             f'of num_global_crops={self.num_global_crops}')
        batch = rows_t // self.num_global_crops
        min_crops = max(2, self.num_global_crops)
        if rows_s % batch or rows_s // batch < min_crops:
            raise ValueError(
                f'DINOLoss: student_output has {rows_s} rows; expected V * {batch} rows (batch '
                f'{batch} from teacher_output) with V >= {min_crops} crops, the first '
                f'{self.num_global_crops} being the teacher\'s global crops')
        num_crops = rows_s // batch
        return num_crops, batch

    def extra_repr(self) -> str:
        return (f'out_channels={self.out_channels}, num_global_crops={self.num_global_crops}, '
                f'student_temp={self.student_temp}, teacher_temp={self.teacher_temp}, '
                f'warmup_teacher_temp={self.warmup_teacher_temp}, '
                f'warmup_iters={self.warmup_iters}, warmup_epochs={self.warmup_epochs}, '
                f'center_momentum={self.center_momentum}')


# deprecated alias of the old class name, for one release (renamed with MMSSLDINO and
# MMSSLDINOHead, whose old names collide with mmpretrain's projects/dino)
DINOLoss = MMSSLDINOLoss
