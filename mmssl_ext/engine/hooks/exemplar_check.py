"""``ExemplarClassesCheckHook``: Exemplar-CNN's classifier has one class per seed image.

``ExemplarCNN`` uses a sample's dataset index as its surrogate class, so the training set (the
seed set, chosen with ``indices=`` on the dataset) and the classifier (``model.head.num_classes``)
must have the same size.  With fewer classes than seeds the first batch holding an index
``>= num_classes`` fails, possibly deep into an epoch; with more, the extra classes never get a
sample and only soak up probability mass.  The model is built without the dataset, so this hook
compares the two in ``before_train`` and names the keys to set.
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmssl_ext.registry import HOOKS

__all__ = ['ExemplarClassesCheckHook']


@HOOKS.register_module()
class ExemplarClassesCheckHook(Hook):
    """Fail before the first iteration when the seed set and the surrogate classes differ."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        classes = getattr(model, 'num_exemplars', None)
        if classes is None:
            return
        dataset = runner.train_dataloader.dataset
        seeds = len(dataset)
        if classes != seeds:
            raise ValueError(
                f'Exemplar-CNN: model.head.num_classes={classes} surrogate classes but the seed '
                f'set (train_dataloader.dataset, {type(dataset).__name__}) has {seeds} images; '
                f'each seed image is one class: set model.head.num_classes={seeds}, or '
                f'train_dataloader.dataset.indices={classes} to sample {classes} seed images'
                + (' (the dataset has fewer images than classes)' if classes > seeds else ''))
