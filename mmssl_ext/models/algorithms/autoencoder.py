"""What the denoising, contractive and variational auto-encoders share: the encoder (any
mmpretrain backbone, global-average pooled: what transfers), the decoder sized from the
encoder's output, and the input checks."""
import copy
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.selfsup.base import BaseSelfSupervisor

from mmssl_ext.registry import MODELS


def encoder_geometry(backbone: torch.nn.Module, in_channels: int,
                     input_size: int) -> Tuple[int, Tuple[int, int]]:
    """Channels and ``h x w`` of the backbone's last output for a ``input_size`` square image,
    from one forward pass in eval mode without gradients (no running statistic changes)."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            param = next(backbone.parameters(), None)
            device = param.device if param is not None else None
            out = backbone(torch.zeros(1, in_channels, input_size, input_size, device=device))
    finally:
        backbone.train(was_training)
    last = out[-1] if isinstance(out, (list, tuple)) else out
    if last.ndim != 4:
        raise ValueError(f'auto-encoder: the backbone must return B x C x h x w feature maps, '
                         f'got shape {tuple(last.shape)} for a {input_size} px input')
    return int(last.shape[1]), (int(last.shape[2]), int(last.shape[3]))


class AutoEncoderBase(BaseSelfSupervisor):
    """Backbone -> global average pool ``f`` -> (the method's code) -> ``AEDecoderHead``.

    The decoder config may leave out ``in_channels`` (the code size: ``code_dim`` given by the
    subclass, else the backbone's channels), ``feat_size`` and ``output_stride``: they are read
    from one forward pass of the backbone on a ``input_size`` image, so the same config works for
    any backbone and the decoder's output has the input's size.

    Args:
        backbone (dict): The encoder, any mmpretrain backbone returning feature maps.
        head (dict): ``AEDecoderHead`` config.
        loss (dict): Reconstruction loss config (``AEReconstructionLoss``, or ``ELBOLoss``).
        input_size (int): Side of the (square) training images. Defaults to 32.
        code_dim (int, optional): Size of the code the decoder reads. Defaults to the
            backbone's channels (the pooled features themselves).
        data_preprocessor (dict, optional): Defaults to ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 loss: dict,
                 input_size: int = 32,
                 code_dim: Optional[int] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        name = type(self).__name__
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f'{name}: input_size must be a positive int (the training image '
                             f'side), got {input_size!r}')
        super().__init__(backbone=backbone, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        in_channels = backbone.get('in_channels', 3) if isinstance(backbone, dict) else 3
        self.input_size = input_size
        self.feat_channels, feat_size = encoder_geometry(self.backbone, in_channels, input_size)
        stride = input_size // feat_size[0]
        if feat_size[0] != feat_size[1] or stride * feat_size[0] != input_size \
                or stride & (stride - 1):
            raise ValueError(f'{name}: the backbone maps a {input_size} px image to '
                             f'{feat_size[0]} x {feat_size[1]}, not a power-of-2 stride the '
                             f'decoder can invert; set input_size to a multiple of the '
                             f"backbone's stride (32 for a ResNet)")
        head = copy.deepcopy(head)
        code = code_dim if code_dim is not None else self.feat_channels
        head.setdefault('feat_size', feat_size)
        head.setdefault('output_stride', stride)
        for key, value, what in (('in_channels', code, 'the code has'),
                                 ('out_channels', in_channels, 'the images have')):
            if head.setdefault(key, value) != value:
                raise ValueError(f'{name}: head.{key}={head[key]} but {what} {value} '
                                 f'channels; leave head.{key} out to take it from the model')
        self.head = MODELS.build(head)
        if self.head.output_size != (input_size, input_size):
            raise ValueError(f'{name}: the decoder outputs {self.head.output_size} images but '
                             f'input_size={input_size}; leave head.feat_size / '
                             f'head.output_stride out to size the decoder from the backbone')
        self.loss_module = MODELS.build(loss)

    def pooled(self, inputs: torch.Tensor) -> torch.Tensor:
        """``f``: the backbone's last feature map, global-average pooled (``B x C``)."""
        out = self.backbone(inputs)
        last = out[-1] if isinstance(out, (list, tuple)) else out
        return F.adaptive_avg_pool2d(last, 1).flatten(1)

    def check_image(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(f'{type(self).__name__}: expected B x C x {self.input_size} x '
                             f'{self.input_size} images (input_size), got {tuple(x.shape)}; '
                             f'crop / resize to input_size in the pipeline or set '
                             f'model.input_size')
        return x

    def one_view(self, inputs: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f'{type(self).__name__} expects one view per sample, got '
                                 f'{len(inputs)}; remove multi-view transforms (CorruptedPair '
                                 f'is for DenoisingAE) from the pipeline')
            inputs = inputs[0]
        return self.check_image(inputs)
