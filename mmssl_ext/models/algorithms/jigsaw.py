"""Jigsaw puzzles (Noroozi & Favaro, ECCV 2016): the covariant twin of PIRL."""
from typing import List, Optional, Union

import torch

from mmssl_ext.registry import MODELS
from .pretext_classification import PretextClassification


@MODELS.register_module()
class JigsawPuzzle(PretextClassification):
    """Classify which permutation of a fixed set shuffled the 9 tiles of an image.

    ``JigsawPatches`` (the transform PIRL uses) cuts a crop into a 3x3 grid of jittered tiles and
    shuffles them with permutation ``p`` of a set chosen by maximal Hamming distance
    (``permutation_method='max_avg_hamming'``, Noroozi & Favaro's algorithm, e.g. 100 or 1000
    permutations).  All ``B*9`` tiles
    go through the shared backbone (the siamese "context-free network") in one batch; the head
    (``PretextClsHead`` with ``num_inputs=9``) projects each tile, concatenates the 9 in the
    shuffled order and classifies ``p`` among the ``num_classes`` permutations::

        loss = 1/B sum_i CE(head([phi(t_i,perm[1]), ..., phi(t_i,perm[9])]), p_i)

    With the same patches and backbone as PIRL (whose ``g`` projects, concatenates and
    projects the same tiles), the two differ only in the objective: predict the permutation
    (covariant) vs. be invariant to it.

    Args:
        normalize_patches: normalise every tile to zero mean and unit variance over its own
            pixels (per channel) before the backbone, as in the paper: it removes the low-level
            shortcut of matching tile statistics across edges.  Defaults to True.
        eps: added to the per-tile std. Defaults to 1e-5.
    """

    label_key = 'jigsaw_label'
    num_views = None  # grid * grid tiles; the head checks the count against num_inputs
    pipeline_hint = ("use dict(type='JigsawPatches', ...) and dict(type='PackInputs', "
                     "input_key='patches', algorithm_keys=['jigsaw_label'])")

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 neck: Optional[dict] = None,
                 normalize_patches: bool = True,
                 eps: float = 1e-5,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        super().__init__(backbone=backbone, head=head, neck=neck,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.normalize_patches = normalize_patches
        self.eps = eps

    def prepare_views(self, views: torch.Tensor) -> torch.Tensor:
        if not self.normalize_patches:
            return views
        mean = views.mean(dim=(2, 3), keepdim=True)
        std = views.std(dim=(2, 3), keepdim=True, unbiased=False)
        return (views - mean) / (std + self.eps)
