"""Colorization: Colorful Image Colorization (Zhang, Isola & Efros, ECCV 2016) as a pretext task."""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.models.data_preprocessors import ColorizationDataPreprocessor  # noqa: F401
from mmssl_ext.registry import MODELS


@MODELS.register_module()
class Colorization(BaseSelfSupervisor):
    """Colorization as a pretext task: predict the ab colour of each pixel from its lightness L.

    Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016.  The input is the L channel
    (a 1-channel backbone, ``in_channels=1``); the output is, per pixel of a stride-4 grid, a
    distribution over the ``Q`` in-gamut ab bins of a grid of size 10 (``ABQuantizer``: 262 bins
    of the sRGB gamut; the paper's file has 313), trained with the class-rebalanced multinomial
    cross-entropy against the soft-encoded target (:class:`ColorizationHead`)::

        L, ab   = Lab(image)                     (ColorizationDataPreprocessor)
        logits  = head(backbone((L - 50) / 50))  B x Q x H/4 x W/4 (hypercolumn of stages)
        loss    = mean_pixels v(q*) * CE(Z(ab~), softmax(logits))

    Defaults as in the paper: grid 10, soft encoding with 5 neighbours and sigma 5, rebalancing
    lambda 0.5 with a prior smoothed by sigma 5, annealed-mean decoding at T = 0.38
    (:meth:`colorize`).  The class prior is a running histogram of the training targets (the
    paper precomputed it on ImageNet).  Logged besides ``loss``: ``accuracy``, the fraction of
    output pixels whose most likely bin is the target's nearest bin.

    Transfer: the backbone's first conv takes 1 channel; ``tools/extract_backbone.py
    --in-channels 3`` replicates it to RGB (divided by 3), see ``configs/colorization/README.md``.

    Args:
        backbone: backbone config with ``in_channels=1`` returning the stages the head uses
            (e.g. ResNet with ``out_indices=(1, 2, 3)``).
        head: ``ColorizationHead`` config.
        data_preprocessor: ``ColorizationDataPreprocessor`` config (the default).
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if isinstance(backbone, dict) and backbone.get('in_channels', 3) != 1:
            raise ValueError('Colorization feeds the 1-channel lightness L to the backbone: set '
                             f"backbone.in_channels=1 (got {backbone.get('in_channels', 3)})")
        if data_preprocessor is None:
            data_preprocessor = dict(type='ColorizationDataPreprocessor')
        super().__init__(backbone=backbone, head=head, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('Colorization.loss expects inputs=[L, ab], as returned by '
                             'ColorizationDataPreprocessor in training mode; got '
                             f'{type(inputs).__name__}')
        lightness, ab = inputs
        return self.head.loss(self.backbone(lightness), ab)

    @torch.no_grad()
    def colorize(self, lightness: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
        """Predicted ab (``B x 2 x H x W``, annealed mean, upsampled to the input size) for a
        normalised lightness batch (the preprocessor's test-mode output)."""
        logits = self.head(self.backbone(lightness), self.head.output_size(lightness.shape[-2:]))
        ab = self.head.quantizer.decode(logits, temperature)
        return F.interpolate(ab, size=lightness.shape[-2:], mode='bilinear', align_corners=False)
