"""The decoder and masked L2 loss of the Context Encoder (Pathak et al., CVPR 2016)."""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmssl_ext.registry import MODELS


class ChannelWiseFC(nn.Module):
    """The paper's channel-wise fully connected layer: each channel's ``h x w`` map is fully
    connected to a new ``h x w`` map of the same channel (no mixing across channels)::

        y[b, c, j] = sum_i x[b, c, i] * W[c, i, j] + bias[c, j]      (i, j index h * w)

    ``C * (hw)^2`` parameters instead of the ``(C * hw)^2`` of a dense layer.  Initialised like
    ``nn.Linear`` (uniform in +-1/sqrt(hw)).
    """

    def __init__(self, channels: int, feat_size: Tuple[int, int]) -> None:
        super().__init__()
        self.feat_size = tuple(feat_size)
        n = self.feat_size[0] * self.feat_size[1]
        bound = 1.0 / math.sqrt(n)
        self.weight = nn.Parameter(torch.empty(channels, n, n).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(channels, n).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if (h, w) != self.feat_size:
            raise ValueError(f'ContextEncoderHead: the channel-wise FC bottleneck was built for '
                             f'{self.feat_size[0]} x {self.feat_size[1]} feature maps '
                             f'(feat_size), got {h} x {w}; set head.feat_size = input size / '
                             f'output_stride, or bottleneck=False')
        y = torch.einsum('bci,cij->bcj', x.flatten(2), self.weight) + self.bias
        return y.view(b, c, h, w)


@MODELS.register_module()
class ContextEncoderHead(BaseModule):
    """Decoder of the Context Encoder: backbone feature map -> reconstructed image, plus the
    masked L2 reconstruction loss.

    Architecture (``n = log2(output_stride)`` up-sampling stages)::

        x: B x in_channels x h x w             (the backbone's last feature map)
        [channel-wise FC (h*w -> h*w per channel) -> 1x1 conv, norm, ReLU]   if bottleneck
        n x [4x4 stride-2 transposed conv | 2x bilinear upsample + 3x3 conv, norm, ReLU]
        3x3 conv -> B x out_channels x (h * output_stride) x (w * output_stride)

    The output is linear (no tanh): the targets are normalised images (zero mean, unit std).
    For a ResNet (``output_stride=32``) at 32 px the feature map is 1 x 1 (the channel-wise FC is
    then a per-channel affine map); at 128 px it is 4 x 4, the paper's 4 x 4 bottleneck.

    Loss (:meth:`loss`), with ``m`` the mask (1 = dropped pixel) and ``a = overlap_weight``::

        w_p  = m_p + a * (1 - m_p)
        loss = sum_{b,c,p} w_p * (pred - target)^2 / (C * sum_{b,p} w_p)

    With ``a = 0`` (default) it is the mean squared error over the masked pixels and channels
    only: unmasked pixels of the prediction do not matter.  ``a > 0`` also asks the decoder to
    reproduce the visible context with weight ``a`` per pixel (the paper instead predicts a
    border 4 px wide *around* its hole with 10x weight; ``a`` is a simpler, global form of that).
    A batch whose weights sum to zero (no masked pixel and ``a = 0``) raises ``ValueError``:
    a silent zero loss would train nothing, and ``InpaintingMask`` never draws an empty mask.

    Args:
        in_channels (int): Channels of the backbone's last feature map (2048 for ResNet-50).
        channels (Sequence[int]): Output channels of the ``log2(output_stride)`` up-sampling
            stages. Defaults to (512, 256, 128, 64, 64) (the paper's decoder widths).
        out_channels (int): Image channels. Defaults to 3.
        output_stride (int): Input size / feature-map size of the backbone, a power of 2.
            Defaults to 32 (ResNet).
        feat_size (int | tuple[int, int]): Feature-map size for the channel-wise FC
            (input size / output_stride). Defaults to 4 (128 px input).
        bottleneck (bool): Use the channel-wise FC bottleneck. Defaults to True.
        upsample (str): ``'deconv'`` (transposed conv, as in the paper) or ``'bilinear'``
            (bilinear up-sampling + 3x3 conv). Defaults to ``'deconv'``.
        norm_cfg (dict): Norm layer of the decoder. Defaults to ``dict(type='BN')``.
        overlap_weight (float): ``a`` above, >= 0. Defaults to 0.
        init_cfg (dict, optional): Initialisation config.
    """

    UPSAMPLE = ('deconv', 'bilinear')

    def __init__(self,
                 in_channels: int,
                 channels: Sequence[int] = (512, 256, 128, 64, 64),
                 out_channels: int = 3,
                 output_stride: int = 32,
                 feat_size: Union[int, Tuple[int, int]] = 4,
                 bottleneck: bool = True,
                 upsample: str = 'deconv',
                 norm_cfg: dict = dict(type='BN'),
                 overlap_weight: float = 0.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'ContextEncoderHead: in_channels must be a positive int, '
                             f'got {in_channels!r}')
        if not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f'ContextEncoderHead: out_channels must be a positive int, '
                             f'got {out_channels!r}')
        if not isinstance(output_stride, int) or output_stride < 1 \
                or output_stride & (output_stride - 1):
            raise ValueError(f'ContextEncoderHead: output_stride must be a power of 2, '
                             f'got {output_stride!r}')
        num_stages = output_stride.bit_length() - 1
        channels = tuple(channels)
        if len(channels) != num_stages or not all(isinstance(c, int) and c > 0
                                                  for c in channels):
            raise ValueError(f'ContextEncoderHead: channels must hold {num_stages} positive ints '
                             f'(one per 2x up-sampling stage, log2(output_stride='
                             f'{output_stride})), got {channels}')
        if upsample not in self.UPSAMPLE:
            raise ValueError(f'ContextEncoderHead: upsample must be one of {self.UPSAMPLE}, '
                             f'got {upsample!r}')
        if overlap_weight < 0:
            raise ValueError(f'ContextEncoderHead: overlap_weight must be >= 0, '
                             f'got {overlap_weight}')
        if isinstance(feat_size, int):
            feat_size = (feat_size, feat_size)
        feat_size = tuple(feat_size)
        if bottleneck and (len(feat_size) != 2 or min(feat_size) < 1):
            raise ValueError(f'ContextEncoderHead: feat_size must be a positive int or (h, w), '
                             f'got {feat_size}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.output_stride = output_stride
        self.feat_size = feat_size
        self.overlap_weight = float(overlap_weight)

        if bottleneck:
            self.bottleneck = nn.Sequential(
                ChannelWiseFC(in_channels, feat_size),
                nn.Conv2d(in_channels, in_channels, 1, bias=False),
                build_norm_layer(norm_cfg, in_channels)[1],
                nn.ReLU(inplace=True))
        else:
            self.bottleneck = nn.Identity()
        stages = []
        prev = in_channels
        for ch in channels:
            if upsample == 'deconv':
                up = [nn.ConvTranspose2d(prev, ch, 4, stride=2, padding=1, bias=False)]
            else:
                up = [nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
                      nn.Conv2d(prev, ch, 3, padding=1, bias=False)]
            stages.append(nn.Sequential(*up, build_norm_layer(norm_cfg, ch)[1],
                                        nn.ReLU(inplace=True)))
            prev = ch
        self.decoder = nn.Sequential(*stages)
        self.final = nn.Conv2d(prev, out_channels, 3, padding=1)

    def forward(self, feats: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
        """Reconstruct the image from the backbone output (a tensor or a tuple: the last one)."""
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'ContextEncoderHead: expected a B x {self.in_channels} x h x w '
                             f'feature map (in_channels), got shape {tuple(x.shape)}')
        return self.final(self.decoder(self.bottleneck(x)))

    def loss(self, pred: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        """Masked L2: ``pred``, ``target`` ``B x C x H x W``; ``mask`` ``B x H x W`` (or
        ``B x 1 x H x W``), 1 = dropped pixel.  See the class docstring for the formula."""
        if pred.shape != target.shape or pred.ndim != 4:
            raise ValueError(f'ContextEncoderHead.loss: pred {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} must both be B x C x H x W')
        if mask.ndim == 4 and mask.shape[1] == 1:
            mask = mask[:, 0]
        b, c, h, w = target.shape
        if tuple(mask.shape) != (b, h, w):
            raise ValueError(f'ContextEncoderHead.loss: mask shape {tuple(mask.shape)} does not '
                             f'match the images (expected {(b, h, w)})')
        m = (mask != 0).to(pred.dtype)
        weight = m + self.overlap_weight * (1 - m) if self.overlap_weight else m
        denom = weight.sum() * c
        if denom <= 0:
            raise ValueError('ContextEncoderHead.loss: the mask selects no pixel in the batch '
                             '(all zeros) and overlap_weight=0: nothing to reconstruct')
        sq = (pred - target).pow(2).sum(dim=1)  # B x H x W, summed over channels
        return (sq * weight).sum() / denom
