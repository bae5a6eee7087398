"""PIRL: Pretext-Invariant Representation Learning (Misra & van der Maaten, CVPR 2020)."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS
from ..utils import bn_running_stats_frozen


@MODELS.register_module()
class PIRL(BaseSelfSupervisor):
    """PIRL with a memory bank and an NCE loss.

    Two views of each image ``I``: the image view ``v_I`` and a transformed view ``v_It``
    (jigsaw patches ``B x 9 x C x h x w``, a rotated image, or both combined).  The backbone
    runs once on the image views and once on all ``B*9`` patches in a single batch::

        f(v_I)  = neck(backbone(v_I))                 image embedding   (B x 128, L2-normalised)
        g(v_It) = transform_neck(backbone(patches))   per-patch proj -> concat -> proj (B x 128)
        m_I     = memory_bank[sample_idx]             (before this step's update)
        loss    = lambda * L(m_I, g(v_It)) + (1 - lambda) * L(m_I, f(v_I))
        m_I    <- normalize(mu * m_I + (1 - mu) * f(v_I))

    ``L`` is the binary NCE (``NCELoss``) or InfoNCE (``InfoNCELoss``), with negatives drawn from
    the bank: ``L(m_I, v)`` uses ``s(m_I, v)`` as the positive and ``s(v, m_I')`` as negatives.
    Each term draws its own negatives, as VISSL's ``nce_loss_with_memory`` does (one draw per
    loss term), unless ``shared_negatives=True``: then both terms use one draw.

    Args:
        backbone: backbone config (any mmpretrain backbone, e.g. ResNet of any depth).
        neck: the image projection ``f`` (e.g. mmpretrain's ``LinearNeck``, 2048 -> 128).
        transform_neck: the projection ``g`` of the transformed view: ``JigsawProjectionNeck``
            for patch views, a ``LinearNeck`` for rotated images.
        memory_bank: ``MemoryBank`` config (``length`` = number of training images).
        loss: ``NCELoss`` or ``InfoNCELoss`` config (temperature 0.07).
        loss_lambda: ``lambda`` (0.5 in the paper).
        shared_negatives: ``False`` (default, VISSL): each loss term draws its own negatives from
            the bank; ``True``: one draw serves both terms (half the sampling and gathering).
        transformed_bn_stats: whether the backbone's BatchNorm running statistics also track the
            transformed views.  Either way BatchNorm normalises every forward with its batch's
            statistics while training; this only decides what the *running* statistics, which
            the backbone uses at evaluation and transfer time, are estimated from.  ``False``
            (default): from image views only, i.e. from the inputs the backbone sees downstream.
            ``True``: from both calls, as VISSL does, so the running statistics are a blend of
            full-image and patch statistics (patches are smaller, differently scaled crops); on
            Fashion-MNIST that blend cost kNN accuracy (``configs/pirl/README.md``).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 transform_neck: dict,
                 memory_bank: dict,
                 loss: dict = dict(type='NCELoss', temperature=0.07),
                 loss_lambda: float = 0.5,
                 shared_negatives: bool = False,
                 transformed_bn_stats: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(backbone=backbone, neck=neck,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not 0.0 <= loss_lambda <= 1.0:
            raise ValueError(f'PIRL: loss_lambda must be in [0, 1], got {loss_lambda}')
        self.transform_neck = MODELS.build(transform_neck)
        self.memory_bank = MODELS.build(memory_bank)
        if loss.get('type') == 'NCELoss':
            loss = dict(loss)
            if loss.get('num_data') is None:  # |D| follows the bank (None: unsized)
                loss['num_data'] = self.memory_bank.length
        self.nce = MODELS.build(loss)
        self.loss_lambda = loss_lambda
        self.shared_negatives = shared_negatives
        self.transformed_bn_stats = transformed_bn_stats

    def embed_image(self, img: torch.Tensor) -> torch.Tensor:
        """``f(v_I)``, L2-normalised."""
        return F.normalize(self.neck(self.backbone(img))[0], dim=1)

    def embed_transformed(self, view: torch.Tensor) -> torch.Tensor:
        """``g(v_It)``, L2-normalised; ``view`` is ``B x N x C x h x w`` patches or an image."""
        if view.ndim == 5:
            view = view.flatten(0, 1)  # all B*N patches through the backbone in one batch
        if self.training and not self.transformed_bn_stats:
            with bn_running_stats_frozen(self.backbone):
                feats = self.backbone(view)
        else:
            feats = self.backbone(view)
        return F.normalize(self.transform_neck(feats)[0], dim=1)

    def _similarities(self, v: torch.Tensor, mem: torch.Tensor,
                      negatives: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        pos = (v * mem).sum(dim=1)
        if negatives.ndim == 2:  # one shared set: one matmul
            neg = v @ negatives.t()
        else:  # per-sample negatives B x K x D
            neg = torch.einsum('bd,bkd->bk', v, negatives)
        return pos, neg

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError('PIRL expects two views per sample (image view, transformed view); '
                             'use the PIRLViews transform in the pipeline')
        img, transformed = inputs
        idx = torch.as_tensor([int(ds.sample_idx) for ds in data_samples],
                              device=img.device, dtype=torch.long)
        v_img = self.embed_image(img)
        v_t = self.embed_transformed(transformed)
        mem = self.memory_bank.get(idx).detach()
        negatives_t = self.memory_bank.sample_negatives(idx).detach()
        negatives_i = (negatives_t if self.shared_negatives else
                       self.memory_bank.sample_negatives(idx).detach())
        pos_t, neg_t = self._similarities(v_t, mem, negatives_t)
        pos_i, neg_i = self._similarities(v_img, mem, negatives_i)
        loss_t = self.nce(pos_t, neg_t)
        loss_i = self.nce(pos_i, neg_i)
        self.memory_bank.update(idx, v_img.detach())
        loss = self.loss_lambda * loss_t + (1 - self.loss_lambda) * loss_i
        # only 'loss' is optimised; the two terms are logged (mmengine sums keys with 'loss')
        return dict(loss=loss, nce_transformed=loss_t.detach(), nce_image=loss_i.detach())
