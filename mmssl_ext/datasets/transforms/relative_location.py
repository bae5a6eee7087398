"""Relative patch location (Doersch, Gupta & Efros, ICCV 2015): a centre patch and a neighbour."""
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import RandomResizedCrop

from mmssl_ext.registry import TRANSFORMS
from .pretext import PipelineCfg, _build_pipeline, _to_three_channels, augment_patch

#: (row, column) offset of neighbour ``k`` from the centre: the 3x3 lattice in row-major order
#: without its centre, i.e. label 0 is top-left, 1 top, 2 top-right, 3 left, 4 right, ...
NEIGHBOUR_OFFSETS: Tuple[Tuple[int, int], ...] = (
    (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@TRANSFORMS.register_module()
class RelativeLocationPatches(BaseTransform):
    """The centre patch of a 3x3 lattice and one random neighbour, labelled by its position.

    Steps: random resized crop (mmpretrain's ``RandomResizedCrop``, area ``crop_scale``) to
    ``crop_size = 3 * patch_size + 2 * gap + 2 * jitter`` px -> a 3x3 lattice of
    ``patch_size`` squares spaced ``patch_size + gap`` apart, centred in the crop -> the centre
    patch and neighbour ``k`` (uniform over the 8, see :data:`NEIGHBOUR_OFFSETS`), each shifted
    by its own uniform jitter in ``[-jitter, jitter]`` px per axis (the gap and the jitter stop
    the network from solving the task by continuing lines and textures across the border) ->
    ``patch_pipeline`` on each patch (e.g. Doersch's colour dropping / projection against
    chromatic aberration).  Grayscale images are expanded to 3 channels first.

    Paper (ImageNet): 96 px patches, a 48 px gap, up to 7 px jitter.

    **Required Keys:** ``img``

    **Added Keys:**

    - ``patches`` (np.ndarray): ``(2, C, patch_size, patch_size)``: centre, then neighbour.
    - ``rel_loc_label`` (int): ``k`` in 0..7.
    - ``rel_loc_boxes`` (np.ndarray): int64 ``(2, 4)`` ``(x1, y1, x2, y2)`` of both patches in the
      crop's coordinates (what the label is about; kept for checks and visualisation).

    Args:
        patch_size (int): Side of each patch. Defaults to 96.
        gap (int): Pixels between neighbouring lattice patches. Defaults to 48.
        jitter (int): Maximal shift of each patch per axis. Defaults to 7.
        crop_scale (tuple[float, float]): Area range of the random crop relative to the image.
            Defaults to (0.6, 1.0).
        patch_pipeline (list[dict | callable], optional): Transforms applied to every patch.
    """

    def __init__(self,
                 patch_size: int = 96,
                 gap: int = 48,
                 jitter: int = 7,
                 crop_scale: Tuple[float, float] = (0.6, 1.0),
                 patch_pipeline: Optional[PipelineCfg] = None) -> None:
        for name, value, low in (('patch_size', patch_size, 1), ('gap', gap, 0),
                                 ('jitter', jitter, 0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f'RelativeLocationPatches: {name} must be an int >= {low}, '
                                 f'got {value!r}')
        self.patch_size = int(patch_size)
        self.gap = int(gap)
        self.jitter = int(jitter)
        self.crop_scale = tuple(crop_scale)
        self.crop_size = 3 * self.patch_size + 2 * self.gap + 2 * self.jitter
        self.crop = RandomResizedCrop(scale=self.crop_size, crop_ratio_range=self.crop_scale)
        self.patch_pipeline = _build_pipeline(patch_pipeline) if patch_pipeline else None

    def _box(self, row: int, col: int) -> np.ndarray:
        """The jittered box of lattice cell (row, col), rows / cols in -1..1."""
        step = self.patch_size + self.gap
        centre_x1 = self.jitter + step  # top-left corner of the unjittered centre patch
        dy, dx = np.random.randint(-self.jitter, self.jitter + 1, size=2)
        x1 = centre_x1 + col * step + int(dx)
        y1 = centre_x1 + row * step + int(dy)
        return np.array([x1, y1, x1 + self.patch_size, y1 + self.patch_size], dtype=np.int64)

    def transform(self, results: dict) -> dict:
        """Write ``patches``, ``rel_loc_label`` and ``rel_loc_boxes`` into ``results``."""
        img = _to_three_channels(results['img'])
        img = self.crop.transform(dict(img=img))['img']
        label = int(np.random.randint(len(NEIGHBOUR_OFFSETS)))
        boxes = np.stack([self._box(0, 0), self._box(*NEIGHBOUR_OFFSETS[label])])
        patches = [img[y1:y2, x1:x2] for x1, y1, x2, y2 in boxes]
        if self.patch_pipeline is not None:
            patches = [augment_patch(self.patch_pipeline, p, img.shape[2]) for p in patches]
        results['patches'] = np.ascontiguousarray(np.stack(patches).transpose(0, 3, 1, 2))
        results['rel_loc_label'] = label
        results['rel_loc_boxes'] = boxes
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(patch_size={self.patch_size}, gap={self.gap}, '
                f'jitter={self.jitter}, crop_scale={self.crop_scale}, '
                f'patch_pipeline={self.patch_pipeline})')
