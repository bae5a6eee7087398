"""CPC v2 (Henaff et al. 2020): contrastive predictive coding on a grid of image patches."""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.structures import DataSample

from mmssl_ext.registry import MODELS

_AUGMENT_KEYS = ('flip_prob', 'color_drop_prob')


@MODELS.register_module()
class CPCv2(BaseSelfSupervisor):
    r"""Contrastive Predictive Coding on a grid of overlapping patches, predicting rows below.

    van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding",
    2018, and Henaff et al., "Data-Efficient Image Recognition with Contrastive Predictive
    Coding", ICML 2020 (v2: layer normalisation instead of batch normalisation in the encoder,
    patch-wise augmentation, a larger encoder)::

        x_{r,col} = patch (r, col) of the image: P x P pixels at stride S   (unfold, no loop)
        z_{r,col} = mean_pool(backbone(aug(x_{r,col})))                     D-dim, the encoder f
        c_{r,col} = g({z_{u,v}}_{u <= r})                                   context network (neck)
        p^k_{r,col} = W_k c_{r,col},  k = S+1..S+K                          linear predictors
        L = mean_{k,b,r,col} -log softmax_{(b',r',col')}(<p^k_{r,col}, z_{b',r',col'}>)[b,r+k,col]

    The row offsets ``k`` skip the ``S = skip_steps`` nearest rows: at stride ``P / 2`` the patch
    one row below shares half its pixels with the context row.  Henaff et al.'s appendix A.2
    pseudo-code (``CPC(latents, ..., steps_to_ignore=2, steps_to_predict=3)``, ``for i in
    range(steps_to_ignore, steps_to_predict)``, target ``i + 1`` rows below) predicts the row 3
    below only: ``S = 2``, ``K = 1``, the defaults.

    ``g`` (:class:`~mmssl_ext.models.necks.CPCContextNetwork`) is row-causal: ``c`` at row ``r``
    sees rows ``<= r`` only, so the prediction of row ``r + k`` cannot look at it.  The InfoNCE
    (:class:`~mmssl_ext.models.losses.CPCInfoNCELoss`) scores each prediction against the true
    patch vector at ``(r + k, col)`` of the same image (positive) and the patch vectors of ALL
    other locations of this image and of every other image of the (per-GPU) batch (negatives);
    the loss is the mean over all ``B * sum_k (R - k) * C`` predictions.  Both ``z`` sides (the
    predicted-from and the predicted) get gradients.

    Geometry: the image must be ``P + S (n - 1)`` pixels on each side (e.g. 256 px, ``P = 64``,
    ``S = 32``: a 7 x 7 grid, CPC's ImageNet setting; 32 px, ``P = 8``, ``S = 4``: the same 7 x 7
    grid scaled by 1/8, our Fashion-MNIST setting).  Patches of neighbouring rows overlap by
    ``P - S`` pixels.  Patch augmentation (optional, on the normalised patches, each patch drawn
    independently from torch's generator): horizontal flip with ``flip_prob``, and Henaff et
    al.'s colour dropping with ``color_drop_prob`` (keep one random channel of three, set the
    other two to 0, i.e. to the dataset mean after normalisation).

    The encoder used downstream (kNN, linear probe, transfer) is ``self.backbone``, applied to
    whole images; use a layer-normalised ResNet (``norm_cfg=dict(type='GN', num_groups=1)``)
    as CPC v2 does: batch statistics shared by the patches of one image are a shortcut.

    Args:
        backbone: the patch encoder (its last output, globally mean pooled, is ``z``).
        neck: ``CPCContextNetwork`` config (``in_channels`` = ``D``).
        patch_size, patch_stride: ``P`` and ``S`` in pixels.
        pred_steps: ``K``, the number of row offsets predicted below each context.
        skip_steps: ``S``, the nearest row offsets not predicted (``S + K < R``).
        loss: ``CPCInfoNCELoss`` config.
        patch_augment: ``None`` or ``dict(flip_prob=..., color_drop_prob=...)``.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 patch_size: int = 64,
                 patch_stride: int = 32,
                 pred_steps: int = 1,
                 skip_steps: int = 2,
                 loss: dict = dict(type='CPCInfoNCELoss', temperature=1.0),
                 patch_augment: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if not (isinstance(patch_size, int) and isinstance(patch_stride, int)
                and patch_size >= 1 and 1 <= patch_stride):
            raise ValueError(f'CPCv2: patch_size and patch_stride must be positive ints, got '
                             f'{patch_size!r} and {patch_stride!r}')
        if not isinstance(pred_steps, int) or pred_steps < 1:
            raise ValueError(f'CPCv2: pred_steps must be an int >= 1, got {pred_steps!r}')
        if not isinstance(skip_steps, int) or skip_steps < 0:
            raise ValueError(f'CPCv2: skip_steps must be an int >= 0, got {skip_steps!r}')
        patch_augment = dict(patch_augment or {})
        unknown = set(patch_augment) - set(_AUGMENT_KEYS)
        if unknown:
            raise ValueError(f'CPCv2: unknown patch_augment keys {sorted(unknown)} (known: '
                             f'{_AUGMENT_KEYS})')
        for key in _AUGMENT_KEYS:
            prob = float(patch_augment.get(key, 0.0))
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f'CPCv2: patch_augment {key}={prob} is not in [0, 1]')
            patch_augment[key] = prob
        super().__init__(backbone=backbone, neck=neck, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.patch_size = patch_size
        self.patch_stride = patch_stride
        self.pred_steps = pred_steps
        self.skip_steps = skip_steps
        self.patch_augment = patch_augment
        dim, ctx = self.neck.in_channels, self.neck.channels
        self.predictors = nn.ModuleList(nn.Conv2d(ctx, dim, 1) for _ in range(pred_steps))
        self.cpc_loss = MODELS.build(loss)

    @property
    def pred_offsets(self) -> Tuple[int, ...]:
        """The row offsets ``k`` predicted, one linear predictor each (``predictors[i]``)."""
        return tuple(range(self.skip_steps + 1, self.skip_steps + self.pred_steps + 1))

    # ------------------------------------------------------------------ the pieces

    def grid_size(self, size: int) -> int:
        """Number of patches along a side of ``size`` pixels (checks that they tile it)."""
        p, s = self.patch_size, self.patch_stride
        if size < p or (size - p) % s:
            raise ValueError(
                f'CPCv2: an image side of {size} px is not tiled by patches of {p} px at stride '
                f'{s} (need {p} + {s} * (n - 1) px, e.g. {p + s * max(1, (size - p) // s)})')
        return (size - p) // s + 1

    def extract_patches(self, img: torch.Tensor) -> torch.Tensor:
        """``B x C x H x W`` -> ``B x R x C' x C x P x P`` patches (row-major grid), by unfold."""
        if not isinstance(img, torch.Tensor) or img.ndim != 4:
            shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f'CPCv2 expects a B x C x H x W image batch, got {shape}')
        for side in img.shape[2:]:
            self.grid_size(side)  # raises if the patches do not tile the image
        p, s = self.patch_size, self.patch_stride
        patches = img.unfold(2, p, s).unfold(3, p, s)  # B x C x R x C' x P x P
        return patches.permute(0, 2, 3, 1, 4, 5).contiguous()

    def augment_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Per-patch flip / colour dropping of ``N x C x P x P`` patches (training only)."""
        n, c = patches.shape[:2]
        flip_p, drop_p = self.patch_augment['flip_prob'], self.patch_augment['color_drop_prob']
        if flip_p > 0:
            flip = torch.rand(n, device=patches.device) < flip_p
            patches = torch.where(flip.view(n, 1, 1, 1), patches.flip(-1), patches)
        if drop_p > 0:
            if c != 3:
                raise ValueError(f'CPCv2: color_drop_prob needs 3-channel patches, got {c}')
            drop = torch.rand(n, device=patches.device) < drop_p
            keep = torch.randint(0, c, (n, ), device=patches.device)
            mask = nn.functional.one_hot(keep, c).to(patches.dtype)
            mask = torch.where(drop.view(n, 1), mask, torch.ones_like(mask))
            patches = patches * mask.view(n, c, 1, 1)
        return patches

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """``B x R x C' x C x P x P`` -> the grid of patch vectors ``z``: ``B x D x R x C'``,
        all ``B * R * C'`` patches through the backbone in ONE batch."""
        b, rows, cols = patches.shape[:3]
        flat = patches.flatten(0, 2)
        if self.training:
            flat = self.augment_patches(flat)
        feat = self.backbone(flat)
        feat = feat[-1] if isinstance(feat, (tuple, list)) else feat
        if feat.ndim == 4:
            feat = feat.mean(dim=(2, 3))
        elif feat.ndim != 2:
            raise ValueError(f'CPCv2: the backbone output must be N x D x h x w or N x D, got '
                             f'{tuple(feat.shape)}')
        return feat.view(b, rows, cols, -1).permute(0, 3, 1, 2)

    def step_losses(self, z: torch.Tensor,
                    context: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per row offset ``k`` of :attr:`pred_offsets`: the per-prediction losses
        (``B * (R - k) * C'``) and whether each prediction ranked its positive first."""
        b, d, rows, cols = z.shape
        if self.pred_offsets[-1] >= rows:
            skip = f' after skip_steps={self.skip_steps}' if self.skip_steps else ''
            raise ValueError(f'CPCv2: pred_steps={self.pred_steps}{skip} must be smaller than '
                             f'the number of patch rows ({rows})')
        candidates = z.permute(0, 2, 3, 1).reshape(-1, d)  # row (b, r, col) -> b*R*C' + r*C' + col
        location = torch.arange(b * rows * cols, device=z.device).view(b, rows, cols)
        out = []
        for predictor, k in zip(self.predictors, self.pred_offsets):
            pred = predictor(context[:, :, :rows - k])  # B x D x (R-k) x C'
            pred = pred.permute(0, 2, 3, 1).reshape(-1, d)
            target = location[:, k:].reshape(-1)  # the patch k rows below, same image & column
            losses, logits = self.cpc_loss(pred, candidates, target, reduction='none',
                                           return_logits=True)
            hit = logits.detach().argmax(dim=1) == target
            out.append((losses, hit))
        return out

    def loss(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: List[DataSample], **kwargs) -> Dict[str, torch.Tensor]:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f'CPCv2 expects one image view per sample, got {len(inputs)}')
            inputs = inputs[0]
        z = self.encode_patches(self.extract_patches(inputs))
        context = self.neck(z)
        steps = self.step_losses(z, context)
        all_losses = torch.cat([losses for losses, _ in steps])
        out = dict(loss=all_losses.mean(),
                   accuracy=torch.cat([hit for _, hit in steps]).float().mean())
        # logged per step (detached; no 'loss' in the keys: mmengine sums those)
        out.update({f'nce_k{k}': losses.detach().mean()
                    for k, (losses, _) in zip(self.pred_offsets, steps)})
        return out
