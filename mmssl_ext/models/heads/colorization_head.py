"""The dense ab-classification head of Colorization (Zhang, Isola & Efros, ECCV 2016)."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.dist import all_reduce
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS
from mmssl_ext.models.utils.lab import ABQuantizer


@MODELS.register_module()
class ColorizationHead(BaseModule):
    """Hypercolumn head predicting a distribution over the ``Q`` quantised ab bins per pixel.

    Architecture: each selected backbone stage ``i`` -> 1x1 ``ConvModule`` (conv-norm-ReLU) to
    ``channels`` -> bilinear upsampling to the output grid (``1 / out_stride`` of the input,
    4 by default, as in the paper) -> fused by summation (``fuse='sum'``) or concatenation ->
    3x3 ``ConvModule`` -> 1x1 conv to ``Q`` logits.

    Loss (the paper's eq. 2 with class rebalancing, eq. 3-4), averaged over the output pixels::

        ab~   = area-downsampled ab target (B x 2 x H/s x W/s)
        Z     = encode_soft(ab~)                      5 nearest bins, Gaussian sigma 5
        q*    = encode_hard(ab~)                      nearest bin
        loss  = mean_{b,h,w}  v(q*) * (- sum_q Z_q log softmax(logits)_q)
        v     = ((1 - lam) p~ + lam / Q)^-1, normalised so that sum_q p~_q v_q = 1

    ``p~`` is the Gaussian-smoothed (sigma 5) class prior, estimated ONLINE: ``bin_counts`` is a
    running histogram of ``q*`` over all training pixels seen so far (a buffer: saved in
    checkpoints and restored on resume; each batch's counts are summed over ranks with
    ``mmengine.dist.all_reduce`` so every DDP rank has the same prior).  The counts are updated
    before the weights are computed, so the first step already uses its own batch.  Until
    ``min_prior_pixels`` pixels have been counted the weights are uniform (1).

    Args:
        in_channels: channels of the backbone outputs used, in order (e.g. ``(512, 1024, 2048)``
            for ResNet-50 with ``out_indices=(1, 2, 3)``).  The head uses the last
            ``len(in_channels)`` backbone outputs.
        channels: width of the projections and of the fusion conv.
        out_stride: output resolution relative to the input (4 in the paper).
        fuse: ``'sum'`` or ``'concat'`` the projected stages.
        quantizer: ``ABQuantizer`` keyword arguments (grid 10, 5 neighbours, sigma 5).
        rebalance: apply the class-rebalancing weights (``False``: plain soft cross-entropy).
        rebalance_lambda: ``lam``, the uniform mixture weight (0.5).
        min_prior_pixels: pixels to count before the rebalancing weights are used.
        norm_cfg: norm layer of the ConvModules (``SyncBN`` for multi-GPU training).
        loss_weight: scale of the loss.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 channels: int = 256,
                 out_stride: int = 4,
                 fuse: str = 'sum',
                 quantizer: Optional[dict] = None,
                 rebalance: bool = True,
                 rebalance_lambda: float = 0.5,
                 min_prior_pixels: int = 100000,
                 norm_cfg: dict = dict(type='BN'),
                 loss_weight: float = 1.0,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(in_channels, int):
            in_channels = (in_channels, )
        if len(in_channels) == 0:
            raise ValueError('ColorizationHead: in_channels must name at least one stage, got '
                             f'{in_channels}')
        if fuse not in ('sum', 'concat'):
            raise ValueError(f"ColorizationHead: fuse must be 'sum' or 'concat', got {fuse!r}")
        if int(out_stride) != out_stride or out_stride < 1:
            raise ValueError(f'ColorizationHead: out_stride must be a positive int, got '
                             f'{out_stride}')
        if not 0.0 < rebalance_lambda <= 1.0:
            raise ValueError('ColorizationHead: rebalance_lambda must be in (0, 1], got '
                             f'{rebalance_lambda}')
        self.in_channels = tuple(in_channels)
        self.out_stride = int(out_stride)
        self.fuse = fuse
        self.rebalance = rebalance
        self.rebalance_lambda = float(rebalance_lambda)
        self.min_prior_pixels = int(min_prior_pixels)
        self.loss_weight = float(loss_weight)
        self.quantizer = ABQuantizer(**(quantizer or {}))
        self.lateral = nn.ModuleList(
            ConvModule(c, channels, 1, norm_cfg=norm_cfg, act_cfg=dict(type='ReLU'))
            for c in self.in_channels)
        fused = channels * (len(self.in_channels) if fuse == 'concat' else 1)
        self.fusion = ConvModule(fused, channels, 3, padding=1, norm_cfg=norm_cfg,
                                 act_cfg=dict(type='ReLU'))
        self.classifier = nn.Conv2d(channels, self.num_bins, 1)
        # running histogram of the hard-encoded training targets (exact integer counts)
        self.register_buffer('bin_counts', torch.zeros(self.num_bins, dtype=torch.long))

    @property
    def num_bins(self) -> int:
        return self.quantizer.num_bins

    def output_size(self, input_size: Tuple[int, int]) -> Tuple[int, int]:
        return tuple(max(int(s) // self.out_stride, 1) for s in input_size)

    def forward(self, feats: Sequence[torch.Tensor], out_size: Tuple[int, int]) -> torch.Tensor:
        """Backbone outputs -> ``B x Q x out_size`` logits."""
        if isinstance(feats, torch.Tensor):
            feats = (feats, )
        if len(feats) < len(self.in_channels):
            raise ValueError(f'ColorizationHead expects {len(self.in_channels)} backbone outputs '
                             f'(in_channels={self.in_channels}), got {len(feats)}: set the '
                             'backbone out_indices accordingly')
        feats = feats[-len(self.in_channels):]
        maps = []
        for conv, feat in zip(self.lateral, feats):
            x = conv(feat)
            if tuple(x.shape[-2:]) != tuple(out_size):
                x = F.interpolate(x, size=out_size, mode='bilinear', align_corners=False)
            maps.append(x)
        x = sum(maps) if self.fuse == 'sum' else torch.cat(maps, dim=1)
        return self.classifier(self.fusion(x))

    def class_weights(self) -> torch.Tensor:
        """Rebalancing weights ``v`` (``Q``) from the prior counted so far (1 during warm-up)."""
        if not self.rebalance or int(self.bin_counts.sum()) < max(self.min_prior_pixels, 1):
            return torch.ones(self.num_bins, device=self.bin_counts.device)
        return self.quantizer.rebalance_weights(self.bin_counts, self.rebalance_lambda)

    @torch.no_grad()
    def update_prior(self, hard: torch.Tensor) -> None:
        """Add the (all-reduced) histogram of the hard targets ``hard`` to ``bin_counts``."""
        counts = torch.bincount(hard.flatten(), minlength=self.num_bins).to(self.bin_counts)
        all_reduce(counts, op='sum')  # a no-op outside distributed training
        self.bin_counts += counts

    def targets(self, ab: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``ab`` (``B x 2 x H x W``) -> area-downsampled ab, soft target, hard target."""
        size = self.output_size(ab.shape[-2:])
        ab_small = F.adaptive_avg_pool2d(ab.float(), size)
        return ab_small, self.quantizer.encode_soft(ab_small), \
            self.quantizer.encode_hard(ab_small)

    def loss(self, feats: Sequence[torch.Tensor], ab: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The rebalanced soft cross-entropy and the hard-bin accuracy (detached)."""
        if not isinstance(ab, torch.Tensor) or ab.ndim != 4 or ab.shape[1] != 2:
            shape = tuple(ab.shape) if isinstance(ab, torch.Tensor) else type(ab).__name__
            raise ValueError(f'ColorizationHead.loss expects the ab target as B x 2 x H x W, '
                             f'got {shape}')
        _, soft, hard = self.targets(ab)
        logits = self(feats, tuple(soft.shape[-2:]))
        if self.training:
            self.update_prior(hard)
        weights = self.class_weights().to(logits.device)[hard]  # B x h x w
        ce = -(soft * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
        loss = self.loss_weight * (weights * ce).mean()
        accuracy = (logits.detach().argmax(dim=1) == hard).float().mean()
        return dict(loss=loss, accuracy=accuracy)
