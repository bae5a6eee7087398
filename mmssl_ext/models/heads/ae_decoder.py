"""The decoder shared by the denoising, contractive and variational auto-encoders: a code vector
back to an image."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from mmssl_ext.models.heads.inpainting_head import ContextEncoderHead
from mmssl_ext.registry import MODELS


@MODELS.register_module()
class AEDecoderHead(BaseModule):
    """Code vector (``B x in_channels``) -> image (``B x out_channels x H x W``)::

        fc: Linear(in_channels, fc_channels * h * w) -> reshape -> norm -> ReLU
        log2(output_stride) x [2x up-sampling stage]  -> 3x3 conv     (ContextEncoderHead's)

    ``h x w`` is the encoder's last feature map and ``output_stride`` the input size over it, so
    the output has the encoder's input size; the auto-encoders fill ``in_channels``,
    ``feat_size`` and ``output_stride`` from a forward pass of their backbone at
    ``input_size`` when the config leaves them out.  The output is linear: the images of the
    ``'mse'`` loss (normalised), or the logits of the ``'bce'`` / Bernoulli loss.

    Args:
        in_channels (int): Code size (the pooled backbone channels, a code layer's units, or
            the VAE's latent size).
        feat_size (int | tuple[int, int]): ``h x w`` of the first feature map.
        output_stride (int): Output size / ``feat_size``, a power of 2.
        fc_channels (int): Channels of the first feature map. Defaults to 256.
        channels (Sequence[int], optional): Output channels of the ``log2(output_stride)``
            up-sampling stages. Defaults to halving ``fc_channels`` per stage, at least 32.
        out_channels (int): Image channels. Defaults to 3.
        upsample (str): ``'deconv'`` or ``'bilinear'`` (see ``ContextEncoderHead``).
            Defaults to ``'deconv'``.
        norm_cfg (dict): Norm layer. Defaults to ``dict(type='BN')``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 feat_size: Union[int, Tuple[int, int]],
                 output_stride: int,
                 fc_channels: int = 256,
                 channels: Optional[Sequence[int]] = None,
                 out_channels: int = 3,
                 upsample: str = 'deconv',
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        for key, value in (('in_channels', in_channels), ('fc_channels', fc_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'AEDecoderHead: {key} must be a positive int, got {value!r}')
        if isinstance(feat_size, int):
            feat_size = (feat_size, feat_size)
        feat_size = tuple(feat_size)
        if len(feat_size) != 2 or min(feat_size) < 1:
            raise ValueError(f'AEDecoderHead: feat_size must be a positive int or (h, w), '
                             f'got {feat_size}')
        if isinstance(output_stride, int) and output_stride >= 1 \
                and not output_stride & (output_stride - 1) and channels is None:
            channels = tuple(max(fc_channels >> (i + 1), 32)
                             for i in range(output_stride.bit_length() - 1))
        self.in_channels = in_channels
        self.feat_size = feat_size
        self.fc_channels = fc_channels
        self.fc = nn.Linear(in_channels, fc_channels * feat_size[0] * feat_size[1])
        self.fc_norm = build_norm_layer(norm_cfg, fc_channels)[1]
        # the up-sampling stages and the output conv, with ContextEncoderHead's checks
        self.upsampler = ContextEncoderHead(
            in_channels=fc_channels, channels=channels if channels is not None else (),
            out_channels=out_channels, output_stride=output_stride, bottleneck=False,
            upsample=upsample, norm_cfg=norm_cfg)
        self.output_stride = output_stride
        self.out_channels = out_channels

    @property
    def output_size(self) -> Tuple[int, int]:
        return (self.feat_size[0] * self.output_stride, self.feat_size[1] * self.output_stride)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if code.ndim != 2 or code.shape[1] != self.in_channels:
            raise ValueError(f'AEDecoderHead: expected a B x {self.in_channels} code '
                             f'(in_channels), got shape {tuple(code.shape)}')
        x = self.fc(code).view(code.shape[0], self.fc_channels, *self.feat_size)
        return self.upsampler(torch.relu(self.fc_norm(x)))
