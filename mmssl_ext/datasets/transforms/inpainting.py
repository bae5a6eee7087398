"""The region mask of the Context Encoder (Pathak et al., CVPR 2016, "Context Encoders: Feature
Learning by Inpainting").

The transform only *draws* the mask; it leaves the image untouched.  The model fills the masked
pixels after normalisation (:class:`~mmssl_ext.models.algorithms.ContextEncoder`), so the fill
value is exact (e.g. 0 = the normalisation mean) and the transform stays cheap.  Place it after
the geometric augmentations (crop, flip), so the mask refers to the final pixel grid::

    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=350, edge='short'),
        dict(type='RandomCrop', crop_size=128),
        dict(type='RandomFlip', prob=0.5),
        dict(type='InpaintingMask', mode='center', ratio=0.5),
        dict(type='PackInputs'),
    ]

``mask`` is one of mmpretrain 1.2's *default* algorithm keys: ``PackInputs`` always stores it as
a tensor with ``DataSample.set_mask`` (``data_sample.mask``, ``H x W`` uint8), so it needs no
``algorithm_keys``.  (Listing it in ``algorithm_keys=['mask']`` is harmless for the model, which
accepts either form, but makes ``PackInputs`` overwrite that tensor with the raw numpy array.)
``default_collate`` leaves the data samples as a list; the model stacks the masks into a
``B x H x W`` batch.

Randomness (``'random_blocks'``) comes from numpy's global RNG, as in the other pretext
transforms (:mod:`mmssl_ext.datasets.transforms.pretext`), so ``np.random.seed`` reproduces it.
"""
from typing import Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from mmssl_ext.registry import TRANSFORMS


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


@TRANSFORMS.register_module()
class InpaintingMask(BaseTransform):
    """Draw the region to inpaint: a central square or random blocks.

    Modes:

    - ``'center'``: the paper's central region, a centred ``round(ratio * H) x round(ratio * W)``
      rectangle (a square for the usual square crops; rounding half up), top-left corner at
      ``((H - h) // 2, (W - w) // 2)``.  ``ratio=0.5`` masks a quarter of the area: the paper's
      64 x 64 centre of a 128 x 128 image.
    - ``'random_blocks'``: the paper's random-block masks.  Squares of side drawn uniformly from
      ``[round(lo * S), round(hi * S)]`` px (``S = min(H, W)``, ``(lo, hi) = block_ratio_range``),
      placed uniformly inside the image and possibly overlapping, are added until the masked
      fraction reaches ``target_fraction`` or ``max_blocks`` blocks have been drawn.  The
      fraction thus lands in ``[target_fraction, target_fraction + round(hi * S)**2 / (H * W))``
      (the last block may overshoot by less than its area), unless ``max_blocks`` stops it
      earlier.

    **Required Keys:** ``img`` (``H x W`` or ``H x W x C``; only its size is read)

    **Added Keys:** ``mask`` (np.ndarray): ``H x W`` uint8, 1 = pixel dropped (to inpaint),
    0 = context.

    Args:
        mode (str): ``'center'`` or ``'random_blocks'``. Defaults to ``'center'``.
        ratio (float): ``'center'``: side of the region relative to the image side, in (0, 1).
            Defaults to 0.5.
        target_fraction (float): ``'random_blocks'``: masked fraction to reach, in (0, 1).
            Defaults to 0.25 (the paper: "covering up to 1/4 of the image").
        block_ratio_range (tuple[float, float]): ``'random_blocks'``: range of a block's side
            relative to the image's short side, ``0 < lo <= hi <= 1``.
            Defaults to (0.125, 0.375) (4 to 12 px at 32 px, 16 to 48 px at 128 px).
        max_blocks (int): ``'random_blocks'``: at most this many blocks. Defaults to 32.
    """

    MODES = ('center', 'random_blocks')

    def __init__(self,
                 mode: str = 'center',
                 ratio: float = 0.5,
                 target_fraction: float = 0.25,
                 block_ratio_range: Tuple[float, float] = (0.125, 0.375),
                 max_blocks: int = 32) -> None:
        if mode not in self.MODES:
            raise ValueError(f'InpaintingMask: mode must be one of {self.MODES}, got {mode!r}')
        if not 0.0 < ratio < 1.0:
            raise ValueError(f'InpaintingMask: ratio must be in (0, 1), got {ratio}')
        if not 0.0 < target_fraction < 1.0:
            raise ValueError(
                f'InpaintingMask: target_fraction must be in (0, 1), got {target_fraction}')
        try:
            lo, hi = (float(v) for v in block_ratio_range)
        except (TypeError, ValueError):
            raise ValueError('InpaintingMask: block_ratio_range must be two numbers (lo, hi), '
                             f'got {block_ratio_range!r}') from None
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError('InpaintingMask: block_ratio_range must satisfy 0 < lo <= hi <= 1, '
                             f'got {block_ratio_range!r}')
        if isinstance(max_blocks, bool) or not isinstance(max_blocks, (int, np.integer)) \
                or max_blocks < 1:
            raise ValueError(f'InpaintingMask: max_blocks must be an integer >= 1, '
                             f'got {max_blocks!r}')
        self.mode = mode
        self.ratio = float(ratio)
        self.target_fraction = float(target_fraction)
        self.block_ratio_range = (lo, hi)
        self.max_blocks = int(max_blocks)

    def _center(self, h: int, w: int) -> np.ndarray:
        mh, mw = _round_half_up(self.ratio * h), _round_half_up(self.ratio * w)
        if mh < 1 or mw < 1:
            raise ValueError(f'InpaintingMask: ratio={self.ratio} gives an empty central region '
                             f'for a {h} x {w} image')
        mask = np.zeros((h, w), dtype=np.uint8)
        top, left = (h - mh) // 2, (w - mw) // 2
        mask[top:top + mh, left:left + mw] = 1
        return mask

    def _random_blocks(self, h: int, w: int) -> np.ndarray:
        short = min(h, w)
        lo = max(1, _round_half_up(self.block_ratio_range[0] * short))
        hi = max(lo, _round_half_up(self.block_ratio_range[1] * short))
        mask = np.zeros((h, w), dtype=np.uint8)
        target = self.target_fraction * h * w
        for _ in range(self.max_blocks):
            side = int(np.random.randint(lo, hi + 1))
            y = int(np.random.randint(0, h - side + 1))
            x = int(np.random.randint(0, w - side + 1))
            mask[y:y + side, x:x + side] = 1
            if mask.sum() >= target:
                break
        return mask

    def transform(self, results: dict) -> dict:
        """Add ``results['mask']`` (``H x W`` uint8) for the image in ``results['img']``."""
        img = results.get('img')
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            got = type(img).__name__ if not isinstance(img, np.ndarray) else f'shape {img.shape}'
            raise ValueError('InpaintingMask: results["img"] must be one H x W (x C) array '
                             f'(a single view), got {got}')
        h, w = img.shape[:2]
        if h < 1 or w < 1:
            raise ValueError(f'InpaintingMask: empty image of size {h} x {w}')
        if self.mode == 'center':
            results['mask'] = self._center(h, w)
        else:
            results['mask'] = self._random_blocks(h, w)
        return results

    def __repr__(self) -> str:
        if self.mode == 'center':
            return f"{self.__class__.__name__}(mode='center', ratio={self.ratio})"
        return (f"{self.__class__.__name__}(mode='random_blocks', "
                f'target_fraction={self.target_fraction}, '
                f'block_ratio_range={self.block_ratio_range}, max_blocks={self.max_blocks})')
