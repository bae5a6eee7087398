"""Context Encoder: feature learning by inpainting (Pathak et al., CVPR 2016)."""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class ContextEncoder(BaseSelfSupervisor):
    """Context Encoder: drop a region of the image, let the network paint it back.

    Per batch (``x`` normalised by the data preprocessor, ``m`` the ``B x H x W`` mask drawn by
    the ``InpaintingMask`` transform, 1 = dropped pixel)::

        x_in = where(m, fill_value, x)          the masked pixels replaced (only those)
        y    = head(backbone(x_in))             encoder (the transferable part) -> decoder
        loss = sum_{m = 1} (y - x)^2 / (C * #masked pixels)   (ContextEncoderHead.loss)

    ``fill_value`` 0 is the normalisation mean: the paper fills the hole with the mean.  A
    per-channel sequence gives another fill, e.g. a data set's own mean when the preprocessor
    normalises with ImageNet statistics (the Fashion-MNIST config does this).  The decoder
    reconstructs the whole image; only the masked region (plus, optionally, the context with
    ``head.overlap_weight``) is penalised.  The adversarial term of the paper is not
    implemented: the L2 loss alone is what the paper's feature-learning experiments started from,
    and the backbone is all that is transferred.

    Defaults (the paper's): 128 px input with a central 64 x 64 hole (``InpaintingMask`` with
    ``mode='center', ratio=0.5``), or random blocks covering 1/4 of the image.

    Args:
        backbone (dict): The encoder, any mmpretrain backbone (e.g. ResNet).
        head (dict): ``ContextEncoderHead`` config (decoder + masked L2 loss).
        fill_value (float | Sequence[float]): Value(s) of the masked pixels in the normalised
            input, one per channel or one for all. Defaults to 0.0.
        data_preprocessor (dict, optional): Defaults to ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 fill_value: Union[float, Sequence[float]] = 0.0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(backbone=backbone, head=head, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        fill = torch.as_tensor(fill_value, dtype=torch.float32)
        if fill.ndim > 1 or not torch.isfinite(fill).all():
            raise ValueError(f'ContextEncoder: fill_value must be a finite number or a sequence '
                             f'of one number per channel, got {fill_value!r}')
        self.register_buffer('fill_value', fill.view(1, -1, 1, 1), persistent=False)

    def _masks(self, data_samples: List[DataSample], inputs: torch.Tensor) -> torch.Tensor:
        """The ``B x H x W`` bool mask batch from the data samples' ``mask`` fields."""
        if data_samples is None or any('mask' not in ds for ds in data_samples):
            raise ValueError('ContextEncoder: every data sample needs a "mask"; add '
                             "dict(type='InpaintingMask') to the pipeline before PackInputs")
        masks = torch.stack([torch.as_tensor(ds.mask, device=inputs.device)
                             for ds in data_samples]).bool()
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        b, _, h, w = inputs.shape
        if tuple(masks.shape) != (b, h, w):
            raise ValueError(f'ContextEncoder: masks of shape {tuple(masks.shape)} do not match '
                             f'the image batch {tuple(inputs.shape)}; InpaintingMask must run '
                             f'after the last transform that changes the image size')
        return masks

    def mask_inputs(self, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``inputs`` with the pixels where ``masks`` (``B x H x W`` bool) is set replaced by
        ``fill_value``; every other pixel unchanged."""
        fill = self.fill_value.to(inputs.dtype)
        if fill.shape[1] not in (1, inputs.shape[1]):
            raise ValueError(f'ContextEncoder: fill_value has {fill.shape[1]} values but the '
                             f'images have {inputs.shape[1]} channels')
        return torch.where(masks[:, None], fill, inputs)

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f'ContextEncoder expects one view per sample, got '
                                 f'{len(inputs)}')
            inputs = inputs[0]
        masks = self._masks(data_samples, inputs)
        feats = self.backbone(self.mask_inputs(inputs, masks))
        pred = self.head(feats)
        if pred.shape != inputs.shape:
            raise ValueError(f'ContextEncoder: the decoder output {tuple(pred.shape)} does not '
                             f'match the input {tuple(inputs.shape)}; the input size must be '
                             f'feature size x head.output_stride ({self.head.output_stride})')
        loss = self.head.loss(pred, inputs, masks)
        return dict(loss=loss, masked_fraction=masks.float().mean().detach())
