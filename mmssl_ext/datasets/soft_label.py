"""An image-list dataset whose samples carry a soft target (``gt_score``), for distillation.

ClusterFit's distillation baseline trains a new network on the *soft* predictions of N_pre
instead of hard cluster ids.  ``tools/clusterfit.py soft-targets`` writes them as an ``N x C``
``.npy`` matrix next to an annotation file with the same N lines in the same order;
:class:`SoftLabelDataset` serves row ``i`` as ``gt_score`` of sample ``i``.  mmpretrain does the
rest unchanged: ``PackInputs`` calls ``DataSample.set_gt_score``, ``ClsDataPreprocessor`` stacks
the scores, and ``ClsHead._get_loss`` hands ``gt_score`` (rather than ``gt_label``) to its loss,
e.g. :class:`~mmssl_ext.models.losses.DistillationKLLoss`.
"""
import os.path as osp
from typing import Optional

import numpy as np
from mmengine.fileio import join_path
from mmengine.utils import is_abs
from mmpretrain.datasets import CustomDataset

from mmssl_ext.registry import DATASETS


def check_soft_targets(scores: np.ndarray, path: str, atol: Optional[float] = None,
                       chunk_rows: int = 65536) -> None:
    """Check an ``N x C`` soft-target matrix: 2-D, finite, non-negative, rows summing to 1.

    Works chunk by chunk, so a memory-mapped matrix is never loaded whole.

    Args:
        atol: tolerance of the row sums (default ``1e-2`` for float16, else ``1e-3``).

    Raises:
        ValueError: naming the file, the first bad row and what is wrong with it.
    """
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f'soft targets {path} must be a non-empty N x C matrix (one row per '
                         f'image, one column per class), got shape {tuple(scores.shape)}')
    if not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(f'soft targets {path} must be float16/32/64, got {scores.dtype}')
    if atol is None:
        atol = 1e-2 if scores.dtype == np.float16 else 1e-3
    for start in range(0, scores.shape[0], chunk_rows):
        block = np.asarray(scores[start:start + chunk_rows], dtype=np.float64)
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(f'soft targets {path}: row {start + int(rows[0])} contains NaN/Inf '
                             f'({len(rows)} such rows in rows {start}..{start + len(block) - 1})')
        neg = (block < 0).any(axis=1)
        if neg.any():
            r = int(np.flatnonzero(neg)[0])
            raise ValueError(f'soft targets {path}: row {start + r} has negative entries (min '
                             f'{block[r].min():.4g}); expected probabilities')
        sums = block.sum(axis=1)
        off = np.abs(sums - 1) > atol
        if off.any():
            r = int(np.flatnonzero(off)[0])
            raise ValueError(f'soft targets {path}: row {start + r} sums to {sums[r]:.6g}, not 1 '
                             f'(tolerance {atol}; {int(off.sum())} such rows in rows {start}..'
                             f'{start + len(block) - 1}); expected a probability distribution '
                             f'per image')


@DATASETS.register_module()
class SoftLabelDataset(CustomDataset):
    """mmpretrain's ``CustomDataset`` plus a soft target per image (``gt_score``).

    Args:
        ann_file: annotation file, one image per line (``path`` or ``path label``; a label, e.g.
            the argmax of the soft target, becomes ``gt_label`` as usual).  Required: the rows
            of ``soft_targets`` follow its line order.
        soft_targets: ``.npy`` file with an ``N x C`` float matrix, row ``i`` = probability
            distribution of the image on line ``i``.  Relative paths are joined with
            ``data_root``, like ``ann_file``.
        atol: tolerance of the row-sum check (default 1e-3; 1e-2 for float16).  Rows are
            renormalised to sum to exactly 1 when served.
        mmap: memory-map the matrix instead of reading it into memory (large N x C).
        **kwargs: ``data_root``, ``data_prefix``, ``with_label``, ``pipeline``, ... of
            ``CustomDataset``.

    Raises:
        ValueError: no ``ann_file``; row count differs from the number of images (names both
            files and both numbers); a row with NaN/Inf, negative entries or not summing to 1.

    Example::

        train_dataloader = dict(dataset=dict(
            type='SoftLabelDataset', data_root='data/fashion_mnist', data_prefix='train',
            ann_file='work_dirs/x/train_soft.txt', soft_targets='work_dirs/x/soft_targets.npy',
            pipeline=[..., dict(type='PackInputs')]))
        model = dict(head=dict(num_classes=C,
                               loss=dict(type='DistillationKLLoss', temperature=T)))
    """

    def __init__(self, ann_file: str = '', soft_targets: str = '', *,
                 atol: Optional[float] = None, mmap: bool = False, **kwargs):
        if not ann_file:
            raise ValueError('SoftLabelDataset needs ann_file: the rows of soft_targets follow '
                             "its line order (a folder scan has no fixed order)")
        if not soft_targets:
            raise ValueError('SoftLabelDataset needs soft_targets: an .npy file with one row '
                             'of class probabilities per line of ann_file')
        self.soft_targets_file = soft_targets
        self.soft_atol = atol
        self.soft_mmap = bool(mmap)
        self._scores = None
        super().__init__(ann_file=ann_file, **kwargs)

    @property
    def num_soft_classes(self) -> int:
        """C, the number of columns of the soft targets."""
        return int(self._load_scores().shape[1])

    def _resolve_soft_path(self) -> str:
        path = self.soft_targets_file
        if not is_abs(path) and self.data_root:
            path = join_path(self.data_root, path)
        return path

    def _load_scores(self) -> np.ndarray:
        if self._scores is None:
            path = self._resolve_soft_path()
            if not osp.isfile(path):
                raise FileNotFoundError(f'soft targets {path} do not exist (soft_targets='
                                        f'{self.soft_targets_file!r}, data_root='
                                        f'{self.data_root!r}); write them with '
                                        f'`tools/clusterfit.py soft-targets`')
            self._scores = np.load(path, mmap_mode='r' if self.soft_mmap else None,
                                   allow_pickle=False)
        return self._scores

    def load_data_list(self):
        data_list = super().load_data_list()
        scores = self._load_scores()
        path = self._resolve_soft_path()
        if scores.ndim != 2 or scores.shape[0] != len(data_list):
            rows = scores.shape[0] if scores.ndim >= 1 else 0
            raise ValueError(
                f'soft targets {path} have {rows} rows (shape {tuple(scores.shape)}) but the '
                f'annotation file {self.ann_file} lists {len(data_list)} images: they must be '
                f'written together, one row per line in the same order')
        check_soft_targets(scores, path, self.soft_atol)
        num_classes = scores.shape[1]
        for i, info in enumerate(data_list):
            label = info.get('gt_label', None)
            if label is not None and not 0 <= int(label) < num_classes:
                raise ValueError(f'{self.ann_file} line {i + 1}: label {label} is outside the '
                                 f'{num_classes} classes of the soft targets {path}')
            info['soft_target_row'] = i
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        row = np.asarray(self._load_scores()[info['soft_target_row']], dtype=np.float32)
        info['gt_score'] = row / row.sum()
        return info
