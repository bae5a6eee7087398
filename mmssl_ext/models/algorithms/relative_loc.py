"""Context prediction: relative patch location (Doersch, Gupta & Efros, ICCV 2015)."""
from mmssl_ext.registry import MODELS
from .pretext_classification import PretextClassification


@MODELS.register_module()
class RelativeLocation(PretextClassification):
    """Given the centre patch of a 3x3 lattice and one of its 8 neighbours, predict which one.

    ``RelativeLocationPatches`` samples the pair (with a gap between patches and a random
    jitter of each patch, so that edges and textures do not continue across patches) and the
    label ``k`` in 0..7 (neighbours in row-major order, the centre skipped).  Both patches go
    through the shared backbone in one batch (``2B`` patches); the head (``PretextClsHead`` with
    ``num_inputs=2``: per-patch ``fc6``, concatenation, ``fc7``, ``fc8``) classifies ``k``::

        loss = 1/B sum_i CE(head([phi(centre_i), phi(neighbour_i)]), k_i)

    Pipeline: ``LoadImageFromFile -> RelativeLocationPatches -> PackInputs(input_key='patches',
    algorithm_keys=['rel_loc_label'])``; data preprocessor ``PatchViewDataPreprocessor``.
    """

    label_key = 'rel_loc_label'
    num_views = 2
    pipeline_hint = ("use dict(type='RelativeLocationPatches', ...) and dict(type='PackInputs', "
                     "input_key='patches', algorithm_keys=['rel_loc_label'])")
