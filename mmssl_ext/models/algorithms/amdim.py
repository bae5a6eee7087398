"""AMDIM (Bachman, Hjelm & Buchwalter, NeurIPS 2019): mutual information across views."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.dist import all_gather, all_reduce, get_rank, get_world_size
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS


class _GatherWithGrad(torch.autograd.Function):
    """All ranks' tensors concatenated along dim 0; the backward sums every rank's gradient of
    this rank's slice (each rank's loss uses every rank's slice), so that DDP's gradient
    average equals the gradient of the mean loss over the global batch."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.size = get_rank(), x.shape[0]
        return torch.cat(all_gather(x.contiguous()))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        all_reduce(grad, op='sum')
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` of every rank, concatenated in rank order (``x`` itself on one process)."""
    return _GatherWithGrad.apply(x) if get_world_size() > 1 else x


def backbone_channels(backbone: nn.Module, size: int) -> List[int]:
    """Channels of each backbone output, from one forward pass of zeros (eval mode, no grad:
    neither BatchNorm statistics nor the random generators change)."""
    conv = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    in_channels = conv.in_channels if conv is not None else 3
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            outs = backbone(torch.zeros(2, in_channels, size, size))
    finally:
        backbone.train(was_training)
    outs = outs if isinstance(outs, (list, tuple)) else (outs, )
    if any(o.ndim != 4 for o in outs):
        raise ValueError(f'AMDIM: the backbone outputs must be B x C x h x w maps, got shapes '
                         f'{[tuple(o.shape) for o in outs]} (use a convolutional backbone)')
    return [o.shape[1] for o in outs]


@MODELS.register_module()
class AMDIM(BaseSelfSupervisor):
    """Augmented Multiscale Deep InfoMax: NCE between global and local features of two views.

    Per batch of two augmented views ``x^a``, ``x^b`` of each image (``MultiView``)::

        (r7, r5, r1) = neck(backbone(x))      per view, the neck's three embedding heads
        s5           = r5 at one random location per image
        L_1t5 = (nce(r1^a, r5^b) + nce(r1^b, r5^a)) / 2    global -> the other view's "5x5" map
        L_1t7 = (nce(r1^a, r7^b) + nce(r1^b, r7^a)) / 2    global -> the other view's "7x7" map
        L_5t5 = (nce(s5^a, r5^b) + nce(s5^b, r5^a)) / 2    one local vector -> the other map
        loss  = L_1t5 + L_1t7 + L_5t5 + reg,   reg = (sum of the six score penalties) / 2

    with ``nce`` :class:`~mmssl_ext.models.losses.AMDIMNCELoss` (positives: the own image's
    locations in the other view; negatives: all locations of the other images).  This is the
    official ``LossMultiNCE`` / ``task_self_supervised.py`` (amdim-public).  Each view goes
    through the backbone alone (its own BatchNorm statistics), as the official code's two
    encoder calls.

    **Encoder.**  AMDIM's own encoder (a ResNet without padding whose layers end at exactly
    7 x 7, 5 x 5 and 1 x 1) is replaced by any mmpretrain backbone: the neck's ``local_indices``
    pick two of its outputs for the 7 x 7 and 5 x 5 roles, the last output pooled is the global
    feature (configs/amdim/README.md names the stages per resolution).  The neck's input
    channels are read from the backbone (one forward pass at ``probe_size`` px at build time).

    **DDP.**  With ``gather_negatives`` (default) every rank scores its sources against the
    targets of ALL ranks (gathered with gradient): the negatives are the global batch, as in
    the official single-process ``DataParallel`` code.  ``False`` keeps them per rank.

    The backbone is what transfers (``extract_feat``); the neck and loss are training only.

    Args:
        backbone: the encoder; ``out_indices`` must include the two local stages and the last.
        neck: ``AMDIMEmbeddingNeck`` config (``in_channels`` read from the backbone if unset).
        loss: ``AMDIMNCELoss`` config.
        gather_negatives: negatives from the global batch (True) or this rank's (False).
        probe_size: image side of the build-time pass that reads the backbone's channels.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 loss: dict = dict(type='AMDIMNCELoss', tclip=20.0, score_reg=0.05),
                 gather_negatives: bool = True,
                 probe_size: int = 64,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if not isinstance(neck, dict):
            raise TypeError(f'AMDIM: neck must be an AMDIMEmbeddingNeck config dict, got '
                            f'{type(neck).__name__}')
        super().__init__(backbone=backbone, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        neck = dict(neck)
        channels = backbone_channels(self.backbone, probe_size)
        local = tuple(neck.get('local_indices', (0, 1)))
        if len(local) != 2 or not all(-len(channels) <= i < len(channels) for i in local):
            raise ValueError(f'AMDIM: neck.local_indices={local} must name 2 of the backbone\'s '
                             f'{len(channels)} outputs; set backbone.out_indices to include '
                             f'both local stages and the last one, e.g. (2, 3) for a ResNet')
        probed = (channels[local[0]], channels[local[1]], channels[-1])
        if neck.get('in_channels') is None:
            neck['in_channels'] = probed
        elif tuple(neck['in_channels']) != probed:
            raise ValueError(f'AMDIM: neck.in_channels={tuple(neck["in_channels"])} but the '
                             f'backbone gives {probed} at local_indices={local} and the last '
                             f'output; remove neck.in_channels to use the backbone\'s')
        self.neck = MODELS.build(neck)
        self.nce = MODELS.build(loss)
        self.gather_negatives = bool(gather_negatives)

    def embed(self, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(r7, r5, r1)`` of one view (see :class:`AMDIMEmbeddingNeck`)."""
        return self.neck(self.backbone(img))

    def collapse_outputs(self, inputs) -> dict:
        """The global embedding ``r1`` of the first view, for the collapse monitor."""
        img = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return dict(embedding=self.embed(img)[2])

    @staticmethod
    def sample_locations(fmap: torch.Tensor) -> torch.Tensor:
        """One location of ``B x D x h x w`` per image, drawn uniformly: ``B x D``."""
        b, d = fmap.shape[:2]
        flat = fmap.flatten(2)
        idx = torch.randint(0, flat.shape[2], (b, ), device=fmap.device)
        return flat[torch.arange(b, device=fmap.device), :, idx]

    def _targets(self, fmap: torch.Tensor) -> torch.Tensor:
        """``B x D x h x w`` -> ``M x hw x D`` targets (M: this rank's or the global batch)."""
        trg = fmap.flatten(2).transpose(1, 2)
        return gather_with_grad(trg) if self.gather_negatives else trg

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            got = len(inputs) if isinstance(inputs, (list, tuple)) else 'a single tensor'
            raise ValueError(f'AMDIM needs two views per image, got {got}; put '
                             f"dict(type='MultiView', num_views=2, ...) before PackInputs")
        views = [self.embed(x) for x in inputs]  # per view: (r7, r5, r1)
        b = views[0][2].shape[0]
        offset = get_rank() * b if self.gather_negatives and get_world_size() > 1 else 0
        pos = torch.arange(b, device=views[0][2].device) + offset
        trg = [dict(r7=self._targets(v[0]), r5=self._targets(v[1])) for v in views]
        src = [dict(r1=v[2], s5=self.sample_locations(v[1])) for v in views]
        out, reg = {}, 0.0
        for name, src_key, trg_key in (('1t5', 'r1', 'r5'), ('1t7', 'r1', 'r7'),
                                       ('5t5', 's5', 'r5')):
            terms = [self.nce(src[a][src_key], trg[1 - a][trg_key], pos) for a in (0, 1)]
            out[f'loss_{name}'] = (terms[0][0] + terms[1][0]) / 2
            reg = reg + (terms[0][1] + terms[1][1]) / 2
        out['loss_reg'] = reg
        return out
