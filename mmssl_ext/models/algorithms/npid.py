"""NPID: instance discrimination with a memory bank (Wu, Xiong, Yu & Lin, CVPR 2018).

"Unsupervised Feature Learning via Non-Parametric Instance Discrimination": every training image
is its own class; a non-parametric classifier compares an image's embedding with one stored
embedding per image, kept in a memory bank and updated with a moving average.
"""
from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS


@MODELS.register_module()
class NPID(BaseSelfSupervisor):
    r"""NPID: instance discrimination against a memory bank, with NCE or InfoNCE.

    For a batch of images ``x_i`` with dataset indices ``i``::

        v_i   = normalize(neck(backbone(x_i)))            embedding (B x 128)
        m_i   = memory_bank[i]                            positive (before this step's update)
        m_j   = memory_bank[j],  j drawn uniformly        K negatives (K = 4096 in the paper)
        loss  = L(s+ = v_i . m_i,  s- = v_i . m_j)        NCELoss (the paper) or InfoNCELoss
        m_i  <- normalize(mu * m_i + (1 - mu) * v_i)      mu = 0.5

    The negatives follow the bank's ``sampling``: ``'per_sample'`` (the ImageNet config, as
    lemniscate.pytorch) draws ``K`` for each sample, excluding only its own index (lemniscate
    does not exclude it: there a sample meets its own entry among its negatives with probability
    about ``K / N``); ``'shared'`` (the Fashion-MNIST config) draws one set of ``K`` for the
    whole batch, excluding every index of the batch.

    ``L`` is the binary NCE of the paper (``NCELoss``: positive vs. ``K`` uniform noise samples,
    the normaliser ``Z`` estimated once by Monte Carlo) or the softmax InfoNCE
    (``InfoNCELoss``, the cross-entropy of ``[s+, s-] / tau``), both at ``tau = 0.07``.  This is
    PIRL without the pretext branch (``PIRL`` with ``loss_lambda=0``), sharing the same
    ``MemoryBank`` (EMA update all-gathered under DDP, kept in checkpoints) and losses; the
    optional proximal regularisation of the paper is not implemented.

    Paper defaults (``configs/npid/npid_r50_8xb32-200e_in1k.py``): ResNet-50, linear projection
    to 128-d, 4096 negatives, ``tau = 0.07``, bank momentum 0.5, SGD lr 0.03 (batch 256),
    momentum 0.9, 200 epochs with the lr divided by 10 at epochs 120 and 160.

    Args:
        backbone: backbone config (any mmpretrain backbone).
        neck: the projection to the embedding space (mmpretrain's ``LinearNeck``, 2048 -> 128).
        memory_bank: ``MemoryBank`` config; ``length`` = number of training images and
            ``feat_dim`` = the neck's output size.
        loss: ``NCELoss`` (its ``num_data`` defaults to the bank length) or ``InfoNCELoss``.
        data_preprocessor: defaults to mmpretrain's ``SelfSupDataPreprocessor``.
        init_cfg: initialisation config.

    The training pipeline gives ONE view per image (a tensor batch, or a list holding one) and
    must keep ``sample_idx`` (mmpretrain's ``PackInputs`` does): it indexes the bank.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 memory_bank: dict,
                 loss: dict = dict(type='NCELoss', temperature=0.07),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(backbone=backbone, neck=neck,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.memory_bank = MODELS.build(memory_bank)
        loss = dict(loss)
        if loss.get('type') == 'NCELoss':
            if loss.get('num_data') is None:  # |D| follows the bank (None: unsized)
                loss['num_data'] = self.memory_bank.length
        self.nce = MODELS.build(loss)

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """``v = normalize(neck(backbone(img)))``, ``B x feat_dim``."""
        return F.normalize(self.neck(self.backbone(img))[0], dim=1)

    @staticmethod
    def _single_view(inputs: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f'NPID expects one view per image; got {len(inputs)} views '
                                 '(drop the MultiView transform from the pipeline)')
            inputs = inputs[0]
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)
            raise ValueError(f'NPID expects an image batch of shape (B, C, H, W); got {shape}')
        return inputs

    @staticmethod
    def _sample_indices(data_samples: List[DataSample], device: torch.device) -> torch.Tensor:
        idx = []
        for n, ds in enumerate(data_samples or []):
            if 'sample_idx' not in ds:
                raise KeyError(f'NPID: data sample {n} has no sample_idx (the memory bank index); '
                               'pack the inputs with PackInputs from an mmengine dataset')
            idx.append(int(ds.sample_idx))
        return torch.as_tensor(idx, device=device, dtype=torch.long)

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        img = self._single_view(inputs)
        idx = self._sample_indices(data_samples, img.device)
        if idx.numel() != img.shape[0]:
            raise ValueError(f'NPID: {img.shape[0]} images but {idx.numel()} data samples')
        v = self.embed(img)
        pos = (v * self.memory_bank.get(idx).to(v.dtype)).sum(dim=1)
        neg = self.memory_bank.negative_similarities(v, idx)
        loss = self.nce(pos, neg)
        self.memory_bank.update(idx, v.detach())
        # logged, not optimised (mmengine sums every key that contains 'loss')
        return dict(loss=loss, pos_similarity=pos.detach().mean(),
                    neg_similarity=neg.detach().mean())
