"""Pretext transforms of PIRL (Misra & van der Maaten 2020): jigsaw patches, 90-degree rotations,
and the two-view wrapper that pairs an image view with its transformed (jigsaw / rotated) view.
The covariant pretext tasks reuse them: Jigsaw puzzles (``JigsawPatches`` with a maximal-Hamming
permutation set) and RotNet (``AllRotations90``: the four rotations of each image in one batch).

Per-sample randomness comes from numpy's global RNG (``np.random``), as in mmcv / mmpretrain
transforms, so ``np.random.seed`` (mmengine seeds it per worker) makes a pipeline reproducible.
The jigsaw *permutation set* is fixed at construction from its own seed, independent of it.

A PIRL jigsaw pipeline::

    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='PIRLViews',
             image_pipeline=[dict(type='RandomResizedCrop', scale=224),
                             dict(type='RandomFlip', prob=0.5),
                             dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                                  saturation=0.4, hue=0.1)],
             transform_pipeline=[dict(type='JigsawPatches', num_permutations=1000)]),
        dict(type='PackInputs', algorithm_keys=['jigsaw_label']),
    ]

``PackInputs`` turns ``img = [image (H, W, C), patches (9, C, 64, 64)]`` into the list of tensors
``[(C, H, W), (9, C, 64, 64)]`` and keeps ``sample_idx`` (set by the dataset, one of its default
meta keys) for the memory bank; ``mmengine``'s ``default_collate`` stacks each element over the
batch.  Jigsaw + rotation: ``transform_pipeline=[dict(type='RandomRotation90'),
dict(type='JigsawPatches')]`` with ``algorithm_keys=['jigsaw_label', 'rot_label']``.
"""
import copy
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmpretrain.datasets.transforms import RandomResizedCrop

from mmssl_ext.registry import TRANSFORMS
from .permutations import generate_permutation_set

PipelineCfg = Sequence[Union[dict, Callable]]


def _build_pipeline(pipeline: Optional[PipelineCfg]) -> Compose:
    """An mmcv ``Compose`` of ``pipeline``; dict configs are built from mmpretrain's TRANSFORMS.

    Building through our (mmpretrain's) registry resolves both mmpretrain / mmssl_ext types and
    mmcv ones (found in the parent registry) without relying on the current default scope.
    """
    transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in (pipeline or [])]
    return Compose(transforms)


def _to_three_channels(img: np.ndarray) -> np.ndarray:
    """A 2-D (H, W) or (H, W, 1) grayscale image as (H, W, 3); other images unchanged."""
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img


def augment_patch(pipeline: Compose, patch: np.ndarray, channels: int) -> np.ndarray:
    """Run ``pipeline`` on one patch (H, W, C); keep its channel count and (uint8) dtype."""
    out = pipeline(dict(img=patch.copy(), img_shape=patch.shape[:2]))
    if out is None:
        raise RuntimeError(f'patch_pipeline {pipeline} dropped a patch')
    aug = out['img']
    if aug.ndim == 2:
        aug = aug[..., None]
    if aug.shape[2] != channels:
        aug = np.repeat(aug, channels, axis=2) if aug.shape[2] == 1 else aug
    if aug.dtype != patch.dtype and patch.dtype == np.uint8:
        aug = np.clip(np.rint(aug), 0, 255).astype(np.uint8)
    return aug


@TRANSFORMS.register_module()
class JigsawPatches(BaseTransform):
    """Cut an image into a shuffled ``grid x grid`` jigsaw of jittered patches.

    Steps: random resized crop to ``crop_size x crop_size`` (mmpretrain's ``RandomResizedCrop``
    with ``crop_ratio_range=crop_scale``; grayscale images are first expanded to 3 channels) ->
    ``grid x grid`` cells of ``crop_size // grid`` pixels -> a randomly placed ``patch_size``
    crop inside each cell (the jitter that hides edge continuity) -> ``patch_pipeline`` on each
    patch independently -> a permutation ``perm = permutations[p]`` with ``p`` uniform in the
    permutation set: output position ``i`` holds the patch of cell ``perm[i]`` (cells numbered
    row-major).

    An image smaller than ``crop_size`` (down to 1 x 1 px, any aspect ratio) is not an error: the
    random resized crop is resized to ``crop_size``, i.e. upsampled, so ``patches`` always has
    the shape below.  (So is the image view of ``PIRLViews`` with ``RandomResizedCrop``;
    mmpretrain's ``CenterCrop`` / ``RandomCrop`` without padding instead return a smaller image.)

    **Required Keys:** ``img``

    **Added Keys:**

    - ``patches`` (np.ndarray): ``(grid * grid, C, patch_size, patch_size)``, the image's dtype
      (uint8 from ``LoadImageFromFile``), C-contiguous, channel-first per patch (``PackInputs``
      keeps 4-D arrays as they are).
    - ``jigsaw_label`` (int): index ``p`` of the permutation in :attr:`permutations`.
    - ``jigsaw_perm`` (np.ndarray): the permutation itself, int64 ``(grid * grid,)``.

    Args:
        grid (int): Cells per side. Defaults to 3.
        crop_size (int): Side of the random resized crop. Defaults to 255 (PIRL / VISSL).
        crop_scale (tuple[float, float]): Area range of the crop relative to the image.
            Defaults to (0.6, 1.0).
        patch_size (int): Side of each patch, at most ``crop_size // grid``. Defaults to 64.
        num_permutations (int): Size of the permutation set (up to 9! for a 3x3 grid).
            Defaults to 1000.
        permutation_seed (int): Seed of the permutation set. Defaults to 0.
        permutation_method (str): ``'random'`` (PIRL / VISSL: any of the 9! permutations),
            ``'max_avg_hamming'`` (Noroozi & Favaro's set, VISSL's jigsaw configs) or
            ``'max_min_hamming'``, see :func:`generate_permutation_set`. Defaults to
            ``'random'``.
        patch_pipeline (list[dict | callable], optional): Transforms applied to every patch
            (``results = {'img': patch}``), e.g. ``ColorJitter`` / ``RandomGrayscale``.  A patch
            returned 2-D (``RandomGrayscale`` without ``keep_channels``) is expanded back to the
            image's channels.  Defaults to None.
    """

    def __init__(self,
                 grid: int = 3,
                 crop_size: int = 255,
                 crop_scale: Tuple[float, float] = (0.6, 1.0),
                 patch_size: int = 64,
                 num_permutations: int = 1000,
                 permutation_seed: int = 0,
                 permutation_method: str = 'random',
                 patch_pipeline: Optional[PipelineCfg] = None) -> None:
        if grid < 1:
            raise ValueError(f'grid must be >= 1, got {grid}')
        if patch_size < 1:
            raise ValueError(f'patch_size must be >= 1, got {patch_size}')
        cell = crop_size // grid
        if patch_size > cell:
            raise ValueError(f'patch_size={patch_size} is larger than the cell size {cell} '
                             f'(crop_size={crop_size} // grid={grid})')
        self.grid = grid
        self.crop_size = crop_size
        self.crop_scale = tuple(crop_scale)
        self.patch_size = patch_size
        self.cell_size = cell
        self.num_permutations = num_permutations
        self.permutation_seed = permutation_seed
        self.permutation_method = permutation_method
        #: ``(num_permutations, grid * grid)`` int64, fixed for the life of the transform
        self.permutations = generate_permutation_set(
            num_permutations, seed=permutation_seed, method=permutation_method, grid=grid)
        self.crop = RandomResizedCrop(scale=crop_size, crop_ratio_range=self.crop_scale)
        self.patch_pipeline = _build_pipeline(patch_pipeline) if patch_pipeline else None

    def _cell_patches(self, img: np.ndarray) -> List[np.ndarray]:
        """One jittered ``patch_size`` square (H, W, C) per cell, cells in row-major order."""
        cell, size = self.cell_size, self.patch_size
        patches = []
        for row in range(self.grid):
            for col in range(self.grid):
                dy = np.random.randint(0, cell - size + 1)
                dx = np.random.randint(0, cell - size + 1)
                y, x = row * cell + dy, col * cell + dx
                patches.append(img[y:y + size, x:x + size])
        return patches

    def _augment_patch(self, patch: np.ndarray, channels: int) -> np.ndarray:
        return augment_patch(self.patch_pipeline, patch, channels)

    def transform(self, results: dict) -> dict:
        """Write ``patches``, ``jigsaw_label`` and ``jigsaw_perm`` into ``results``."""
        img = _to_three_channels(results['img'])
        img = self.crop.transform(dict(img=img))['img']
        channels = img.shape[2]
        patches = self._cell_patches(img)
        if self.patch_pipeline is not None:
            patches = [self._augment_patch(p, channels) for p in patches]
        label = int(np.random.randint(len(self.permutations)))
        perm = self.permutations[label].copy()
        shuffled = np.stack([patches[j] for j in perm])  # (N, h, w, C)
        results['patches'] = np.ascontiguousarray(shuffled.transpose(0, 3, 1, 2))
        results['jigsaw_label'] = label
        results['jigsaw_perm'] = perm
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(grid={self.grid}, crop_size={self.crop_size}, '
                f'crop_scale={self.crop_scale}, patch_size={self.patch_size}, '
                f'num_permutations={self.num_permutations}, '
                f'permutation_seed={self.permutation_seed}, '
                f"permutation_method='{self.permutation_method}', "
                f'patch_pipeline={self.patch_pipeline})')


def _check_angles(angles: Sequence[int]) -> Tuple[int, ...]:
    """``angles`` as a tuple of ints; a clear error unless non-empty multiples of 90."""
    angles = tuple(angles)
    if not angles:
        raise ValueError('angles must not be empty')
    bad = [a for a in angles if not float(a).is_integer() or int(a) % 90 != 0]
    if bad:
        raise ValueError(f'angles must be multiples of 90 degrees, got {bad} in {angles}')
    return tuple(int(a) for a in angles)


def rotate90(img: np.ndarray, angle: int) -> np.ndarray:
    """``img`` (H, W[, C]) rotated counter-clockwise by ``angle`` (a multiple of 90), contiguous."""
    return np.ascontiguousarray(np.rot90(img, (int(angle) // 90) % 4))


@TRANSFORMS.register_module()
class RandomRotation90(BaseTransform):
    """Rotate the image counter-clockwise by an angle drawn uniformly from ``angles``.

    **Required Keys:** ``img``

    **Modified Keys:** ``img`` (a contiguous copy), ``img_shape``

    **Added Keys:** ``rot_label`` (int): index of the drawn angle in ``angles`` (the class of a
    rotation-prediction task).

    Args:
        angles (Sequence[int]): Allowed angles in degrees, multiples of 90.
            Defaults to (0, 90, 180, 270).
    """

    def __init__(self, angles: Sequence[int] = (0, 90, 180, 270)) -> None:
        self.angles = _check_angles(angles)

    def transform(self, results: dict) -> dict:
        """Rotate ``results['img']`` and record ``rot_label``."""
        label = int(np.random.randint(len(self.angles)))
        img = rotate90(results['img'], self.angles[label])
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['rot_label'] = label
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(angles={self.angles})'


@TRANSFORMS.register_module()
class AllRotations90(BaseTransform):
    """All rotations of the image at once: the input of RotNet (Gidaris et al., ICLR 2018).

    Every image contributes one copy per angle to the batch, so each batch holds all four
    rotations of the same images (the paper's key recipe choice: it beat one random rotation per
    image).  The copies are stacked like jigsaw patches, channel-first, and the data preprocessor
    (``PatchViewDataPreprocessor``) and the algorithm treat them as ``len(angles)`` views.

    **Required Keys:** ``img`` (H, W[, C]); square, so that every rotation has the same shape

    **Modified Keys:** ``img`` -> ``(len(angles), C, H, W)`` (the image's dtype), ``img_shape``

    **Added Keys:** ``rot_label`` (np.ndarray int64 ``(len(angles),)``): copy ``i`` is the image
    rotated counter-clockwise by ``angles[rot_label[i]]``; ``rot_label = arange(len(angles))``.

    Args:
        angles (Sequence[int]): Angles in degrees, multiples of 90.  Defaults to (0, 90, 180, 270).
    """

    def __init__(self, angles: Sequence[int] = (0, 90, 180, 270)) -> None:
        self.angles = _check_angles(angles)

    def transform(self, results: dict) -> dict:
        """Replace ``results['img']`` by the stack of its rotations; add ``rot_label``."""
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[0] != img.shape[1] and any((a // 90) % 2 for a in self.angles):
            raise ValueError(f'AllRotations90 needs a square image to stack its 90-degree '
                             f'rotations, got {img.shape[0]}x{img.shape[1]} '
                             f"({results.get('img_path', 'image')}); crop or resize it first")
        views = [rotate90(img, a).transpose(2, 0, 1) for a in self.angles]
        results['img'] = np.ascontiguousarray(np.stack(views))
        results['img_shape'] = img.shape[:2]
        results['rot_label'] = np.arange(len(self.angles), dtype=np.int64)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(angles={self.angles})'


@TRANSFORMS.register_module()
class PIRLViews(BaseTransform):
    """The two views of PIRL in one multi-view output: the image and its transformed version.

    ``image_pipeline`` runs on one copy of ``results`` and gives the image view ``v_I`` (its
    ``img``, HWC); ``transform_pipeline`` runs on another copy of the same loaded image and gives
    the transformed view ``v_It``: that copy's ``patches`` (``(N, C, h, w)``) when present, else
    its ``img``.  The image pipeline runs first (fixed RNG order).

    **Required Keys:** ``img``

    **Modified Keys:** ``img`` -> ``[image_view, transformed_view]``

    **Added Keys:** those of :attr:`LABEL_KEYS` the transform pipeline produced (``jigsaw_label``,
    ``jigsaw_perm``, ``rot_label``).  Other keys (``sample_idx``, ``img_path`` ...) are kept.

    Args:
        image_pipeline (list[dict | callable]): Augmentations of the image view.
        transform_pipeline (list[dict | callable]): Pretext transform(s) of the other view, e.g.
            ``[dict(type='JigsawPatches')]`` or ``[dict(type='RandomRotation90'), ...]``.
    """

    #: keys copied from the transformed view's results into the output
    LABEL_KEYS = ('jigsaw_label', 'jigsaw_perm', 'rot_label')

    def __init__(self, image_pipeline: PipelineCfg, transform_pipeline: PipelineCfg) -> None:
        self.image_pipeline = _build_pipeline(image_pipeline)
        self.transform_pipeline = _build_pipeline(transform_pipeline)

    @staticmethod
    def _copy(results: dict) -> dict:
        """A shallow copy of ``results`` with its own image (transforms may work in place)."""
        view = copy.copy(results)
        view['img'] = results['img'].copy()
        return view

    def transform(self, results: dict) -> Optional[dict]:
        """Replace ``results['img']`` by ``[image_view, transformed_view]`` and add the labels."""
        image_out = self.image_pipeline(self._copy(results))
        if image_out is None:
            return None
        trans_out = self.transform_pipeline(self._copy(results))
        if trans_out is None:
            return None
        transformed = trans_out['patches'] if 'patches' in trans_out else trans_out['img']
        results['img'] = [image_out['img'], transformed]
        for key in self.LABEL_KEYS:
            if key in trans_out:
                results[key] = trans_out[key]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(image_pipeline={self.image_pipeline}, '
                f'transform_pipeline={self.transform_pipeline})')
