"""Input corruptions of the denoising auto-encoder (Vincent et al., ICML 2008 / JMLR 2010,
"Stacked Denoising Autoencoders", section 4.2): masking noise, additive isotropic Gaussian noise
and salt-and-pepper noise, and :class:`CorruptedPair`, which keeps the clean image as the
reconstruction target next to its corrupted copy::

    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=32),
        dict(type='CorruptedPair', corruptions=[dict(type='MaskingNoise', prob=0.25)]),
        dict(type='PackInputs'),     # inputs = [clean batch, corrupted batch]
    ]

The corruptions act on raw pixel values (0-255) before normalisation, as the paper corrupts
its [0, 1] inputs: masking sets a pixel to ``fill`` (0 = black, the paper's "forced to 0"),
salt-and-pepper to the minimum or maximum value.  Each can also be used alone in a pipeline
(it then corrupts ``img`` in place, e.g. as an augmentation).

Randomness comes from numpy's global RNG, as in the other pretext transforms
(:mod:`mmssl_ext.datasets.transforms.pretext`), so ``np.random.seed`` and the exact-resume RNG
state reproduce it.
"""
import copy
import numbers
from typing import List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from mmssl_ext.registry import TRANSFORMS


def _check_prob(name: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f'{name}: {key} must be a probability in [0, 1], got {value!r}')
    return float(value)


def _draw_shape(img: np.ndarray, per_channel: bool) -> tuple:
    """The shape of one random draw: every value (``per_channel``) or one per pixel,
    broadcast over the channels (grey images stored as RGB stay grey)."""
    if per_channel or img.ndim == 2:
        return img.shape
    return img.shape[:2] + (1, )


class _Corruption(BaseTransform):
    """Corrupts ``results['img']`` (``H x W`` or ``H x W x C``) into a float32 array."""

    def corrupt(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            raise ValueError(f'{type(self).__name__}: results["img"] must be an H x W (x C) '
                             f'numpy image; got {type(img).__name__}; place it after the '
                             f'loading / geometric transforms')
        results['img'] = self.corrupt(img)
        return results


@TRANSFORMS.register_module()
class MaskingNoise(_Corruption):
    """Masking noise: each pixel (or value, ``per_channel``) is set to ``fill`` with
    probability ``prob``, the others are kept (the paper's "a fraction nu of the elements of x,
    chosen at random, is forced to 0").

    Args:
        prob (float): Probability of masking a pixel, in [0, 1]. Defaults to 0.25.
        fill (float): Value of a masked pixel (raw pixel units). Defaults to 0.
        per_channel (bool): Draw per value instead of per pixel. Defaults to False.
    """

    def __init__(self, prob: float = 0.25, fill: float = 0.0, per_channel: bool = False):
        self.prob = _check_prob('MaskingNoise', 'prob', prob)
        if isinstance(fill, bool) or not isinstance(fill, numbers.Real):
            raise ValueError(f'MaskingNoise: fill must be a number, got {fill!r}')
        self.fill = float(fill)
        self.per_channel = bool(per_channel)

    def corrupt(self, img: np.ndarray) -> np.ndarray:
        drop = np.random.rand(*_draw_shape(img, self.per_channel)) < self.prob
        return np.where(drop, np.float32(self.fill), img.astype(np.float32))


@TRANSFORMS.register_module()
class AdditiveGaussianNoise(_Corruption):
    """Additive isotropic Gaussian noise: ``x + N(0, std^2)`` on every value (or one draw per
    pixel), clipped to ``clip`` (the valid pixel range) unless ``clip`` is None.

    Args:
        std (float): Standard deviation in raw pixel units (0-255), > 0. Defaults to 25.5
            (0.1 of the range: the paper's sigma = 0.1 on [0, 1] inputs).
        clip (tuple[float, float] | None): Range to clip to. Defaults to (0, 255).
        per_channel (bool): Independent noise per channel. Defaults to True.
    """

    def __init__(self, std: float = 25.5, clip: Optional[Sequence[float]] = (0.0, 255.0),
                 per_channel: bool = True):
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or not std > 0:
            raise ValueError(f'AdditiveGaussianNoise: std must be a number > 0 (raw pixel units, '
                             f'0-255), got {std!r}')
        if clip is not None:
            try:
                lo, hi = (float(v) for v in clip)
            except (TypeError, ValueError):
                raise ValueError(f'AdditiveGaussianNoise: clip must be (low, high) or None, '
                                 f'got {clip!r}') from None
            if not lo < hi:
                raise ValueError(f'AdditiveGaussianNoise: clip must have low < high, '
                                 f'got {clip!r}')
            clip = (lo, hi)
        self.std = float(std)
        self.clip = clip
        self.per_channel = bool(per_channel)

    def corrupt(self, img: np.ndarray) -> np.ndarray:
        noise = np.random.randn(*_draw_shape(img, self.per_channel)).astype(np.float32)
        out = img.astype(np.float32) + np.float32(self.std) * noise
        return out if self.clip is None else np.clip(out, *self.clip).astype(np.float32)


@TRANSFORMS.register_module()
class SaltAndPepperNoise(_Corruption):
    """Salt-and-pepper noise: each pixel (or value) is, with probability ``prob``, set to
    ``high`` (salt, with probability ``salt_ratio``) or ``low`` (pepper), the paper's "set to
    their minimum or maximum possible value according to a fair coin flip".

    Args:
        prob (float): Probability of corrupting a pixel, in [0, 1]. Defaults to 0.25.
        salt_ratio (float): Probability that a corrupted pixel is salt. Defaults to 0.5.
        low (float): Pepper value. Defaults to 0.
        high (float): Salt value. Defaults to 255.
        per_channel (bool): Draw per value instead of per pixel. Defaults to False.
    """

    def __init__(self, prob: float = 0.25, salt_ratio: float = 0.5, low: float = 0.0,
                 high: float = 255.0, per_channel: bool = False):
        self.prob = _check_prob('SaltAndPepperNoise', 'prob', prob)
        self.salt_ratio = _check_prob('SaltAndPepperNoise', 'salt_ratio', salt_ratio)
        if not float(low) < float(high):
            raise ValueError(f'SaltAndPepperNoise: low must be < high, got low={low!r}, '
                             f'high={high!r}')
        self.low, self.high = float(low), float(high)
        self.per_channel = bool(per_channel)

    def corrupt(self, img: np.ndarray) -> np.ndarray:
        shape = _draw_shape(img, self.per_channel)
        hit = np.random.rand(*shape) < self.prob
        salt = np.random.rand(*shape) < self.salt_ratio
        out = np.where(salt, np.float32(self.high), np.float32(self.low))
        return np.where(hit, out, img.astype(np.float32))


@TRANSFORMS.register_module()
class CorruptedPair(BaseTransform):
    """Two views of one image: ``results['img'] = [clean, corrupted]``, the corrupted one made by
    applying ``corruptions`` in order to a copy.  The clean view (unchanged, the reconstruction
    target) comes first; ``PackInputs`` and the data preprocessor turn the pair into
    ``inputs = [clean batch, corrupted batch]``, both normalised alike.

    Args:
        corruptions (list[dict]): Transform configs applied to the copy (e.g.
            ``MaskingNoise``); at least one.
    """

    def __init__(self, corruptions: List[dict]):
        if isinstance(corruptions, dict):
            corruptions = [corruptions]
        if not isinstance(corruptions, (list, tuple)) or not corruptions:
            raise ValueError('CorruptedPair: corruptions must be a non-empty list of transform '
                             "configs, e.g. [dict(type='MaskingNoise', prob=0.25)]; got "
                             f'{corruptions!r}')
        self.corruptions = [TRANSFORMS.build(c) if isinstance(c, dict) else c
                            for c in corruptions]

    def transform(self, results: dict) -> dict:
        img = results.get('img')
        if not isinstance(img, np.ndarray):
            raise ValueError(f'CorruptedPair: results["img"] must be one numpy image, got '
                             f'{type(img).__name__}; use it once, after the geometric transforms')
        noisy = copy.copy(results)
        noisy['img'] = img
        for t in self.corruptions:
            noisy = t(noisy)
            if noisy is None or not isinstance(noisy.get('img'), np.ndarray) \
                    or noisy['img'].shape != img.shape:
                raise ValueError(f'CorruptedPair: corruption {type(t).__name__} must return the '
                                 f'image with its shape {img.shape} unchanged')
        # both views float32 so that they collate and normalise alike
        results['img'] = [img.astype(np.float32), noisy['img'].astype(np.float32)]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(corruptions={self.corruptions})'
