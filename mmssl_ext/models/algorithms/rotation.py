"""RotNet: rotation prediction (Gidaris, Singh & Komodakis, ICLR 2018)."""
from mmssl_ext.registry import MODELS
from .pretext_classification import PretextClassification


@MODELS.register_module()
class RotationPrediction(PretextClassification):
    """Predict which of the four rotations (0, 90, 180, 270 degrees) was applied to an image.

    Every image enters the batch four times, once per rotation (``AllRotations90``), as in the
    paper (all rotations of an image in the same batch trained better than one random rotation
    per image).  For ``B`` images the backbone sees ``4B`` images in one call; the head (a
    ``PretextClsHead`` with ``num_classes=4``) classifies each of them::

        loss = 1/(4B) sum_i sum_r CE(head(backbone(rot(x_i, r))), r)

    Pipeline: ``LoadImageFromFile -> (crop, flip, ...) -> AllRotations90 ->
    PackInputs(algorithm_keys=['rot_label'])``; data preprocessor ``PatchViewDataPreprocessor``.
    """

    label_key = 'rot_label'
    pipeline_hint = ("use dict(type='AllRotations90') and "
                     "dict(type='PackInputs', algorithm_keys=['rot_label'])")
