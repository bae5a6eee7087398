"""The leave-one-out views of LooC (Xiao, Wang, Efros & Darrell, ICLR 2021)."""
import copy
from typing import List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from mmssl_ext.registry import TRANSFORMS
from .pretext import PipelineCfg, _build_pipeline


@TRANSFORMS.register_module()
class LooCViews(BaseTransform):
    """``n + 2`` views of an image: the query, a key with every augmentation drawn anew, and one
    key per augmentation that shares that augmentation's parameters with the query.

    For augmentations ``a_1 .. a_n`` (each a pipeline, e.g. colour jitter + grayscale, or a
    90-degree rotation)::

        q   = post(a_n(... a_1(base(x)) ...))          parameters p_1 .. p_n drawn
        k_0 = post(a_n(... a_1(base(x)) ...))          every parameter drawn anew
        k_i = the same, with a_i applied with q's p_i  (the other augmentations drawn anew)

    ``base`` (crop, flip) and ``post`` run independently for every view.  "The same parameters"
    is implemented by replaying numpy's RNG: the global ``np.random`` state before ``a_i`` ran
    on ``q`` is restored for ``a_i`` on ``k_i`` (and the stream continues where it was after),
    so any augmentation whose randomness comes from ``np.random`` and does not depend on the
    image size (mmpretrain's ``ColorJitter``, ``RandomGrayscale``, ``RandomApply``, our
    ``RandomRotation90``) is reproduced exactly.

    **Required Keys:** ``img``.  **Modified Keys:** ``img`` -> ``[q, k_0, k_1, ..., k_n]``.

    Args:
        base_pipeline: transforms every view gets independently before the augmentations.
        augmentations: the ``n >= 1`` left-out augmentations, each a list of transforms.
        post_pipeline: transforms every view gets independently after them.
    """

    def __init__(self,
                 base_pipeline: PipelineCfg,
                 augmentations: Sequence[PipelineCfg],
                 post_pipeline: Optional[PipelineCfg] = None) -> None:
        if not augmentations:
            raise ValueError('LooCViews needs at least one augmentation to leave out '
                             '(augmentations=[[...colour...], [...rotation...]])')
        self.base_pipeline = _build_pipeline(base_pipeline)
        self.augmentations = [_build_pipeline(a) for a in augmentations]
        self.post_pipeline = _build_pipeline(post_pipeline)

    @property
    def num_views(self) -> int:
        """``n + 2``: the query, ``k_0`` and one key per augmentation."""
        return len(self.augmentations) + 2

    def _view(self, results: dict, shared: Optional[int], states: List) -> Optional[dict]:
        view = copy.copy(results)
        view['img'] = results['img'].copy()
        view = self.base_pipeline(view)
        for a, aug in enumerate(self.augmentations):
            if view is None:
                return None
            if shared is None and states is not None:  # the query: remember the state
                states.append(np.random.get_state())
            if shared == a:
                after = np.random.get_state()
                np.random.set_state(states[a])
                view = aug(view)
                np.random.set_state(after)
            else:
                view = aug(view)
        return None if view is None else self.post_pipeline(view)

    def transform(self, results: dict) -> Optional[dict]:
        states: List = []
        views = [self._view(results, None, states), self._view(results, None, None)]
        views += [self._view(results, a, states) for a in range(len(self.augmentations))]
        if any(v is None for v in views):
            return None
        results['img'] = [v['img'] for v in views]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(base_pipeline={self.base_pipeline}, '
                f'augmentations={self.augmentations}, post_pipeline={self.post_pipeline})')
