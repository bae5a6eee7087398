"""``OnlineLinearProbeHook``: linear evaluation of the backbone while it pre-trains.

Every ``interval`` iterations (or epochs), the backbone's pooled features of a small labelled
set (``train_dataloader``, e.g. the config's ``knn_eval.train_dataloader``) are extracted in
eval mode without gradients, a linear classifier is trained on them, detached from the model,
and its top-1 on ``val_dataloader`` is logged as ``linear_probe/top1`` (message hub, every
visualiser backend, the log) together with the best value so far (``linear_probe/best_top1``).

The classifier is :func:`mmssl_ext.evaluation.layer_probe.linear_probe`: multinomial logistic
regression on standardised features, full-batch L-BFGS from a zero initialisation (a strictly
convex objective), retrained from scratch at every evaluation; it follows the backbone rather
than carrying its own history.  Feature extraction and the DDP gathering are the kNN hook's
(:class:`~mmssl_ext.engine.hooks.knn_hook.KNNEvalHook`, whose loaders and schedule this hook
inherits): every rank extracts its shard, the shards are gathered back into dataset order, and
every rank trains the same deterministic classifier on the same features, so 1 and 2 ranks give
the same numbers and no broadcast is needed.

The evaluation runs with the global random generators saved and restored (building a
``DataLoader`` iterator draws its base seed from torch's generator), so the training stream is
the one of a run without the hook.  The best top-1 and its iteration travel in the checkpoint;
a resumed run continues them.

Example (config, with the Fashion-MNIST ``knn_eval`` section of
``configs/_base_/datasets/fmnist_knn.py``)::

    custom_hooks = [dict(type='OnlineLinearProbeHook', interval=500, by_epoch=False,
                         train_dataloader=knn_eval['train_dataloader'],
                         val_dataloader=knn_eval['val_dataloader'])]
"""
import time
from typing import Dict, Optional, Union

from mmengine.runner import Runner

from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.evaluation.layer_probe import linear_probe
from mmssl_ext.registry import HOOKS
from .knn_hook import KNNEvalHook
from .rng_state import get_rng_state, set_rng_state

CHECKPOINT_KEY = 'online_linear_probe'


@HOOKS.register_module()
class OnlineLinearProbeHook(KNNEvalHook):
    """Train a linear classifier on frozen backbone features every ``interval`` epochs or
    iterations and log its top-1 (see the module docstring).

    Args:
        train_dataloader: loader config (or loader) of the labelled set the classifier is trained
            on; a deterministic pipeline and ``sampler=dict(type='DefaultSampler',
            shuffle=False)``.
        val_dataloader: loader config (or loader) of the set it is evaluated on.
        interval / by_epoch / evaluate_at_end: when, as :class:`KNNEvalHook`.
        weight_decay: L2 penalty of the logistic regression (``weight_decay / 2 * ||W||^2``).
        max_iter: L-BFGS iterations.
        stage / pool: backbone output index and pooling of a feature map.
        num_classes: number of classes; default: from the labels.
    """

    priority = 'LOW'

    def __init__(self,
                 train_dataloader: Union[dict, object],
                 val_dataloader: Union[dict, object],
                 interval: int = 1,
                 by_epoch: bool = True,
                 weight_decay: float = 1e-4,
                 max_iter: int = 100,
                 stage: int = -1,
                 pool: str = 'avg',
                 evaluate_at_end: bool = True,
                 num_classes: Optional[int] = None):
        if weight_decay < 0 or max_iter < 1:
            raise ValueError(f'OnlineLinearProbeHook: weight_decay must be >= 0 and max_iter '
                             f'>= 1, got {weight_decay} and {max_iter}')
        super().__init__(train_dataloader, val_dataloader, interval=interval, by_epoch=by_epoch,
                         stage=stage, pool=pool, evaluate_at_end=evaluate_at_end,
                         num_classes=num_classes)
        self.weight_decay = float(weight_decay)
        self.max_iter = int(max_iter)
        self.best_top1: Optional[float] = None
        self.best_step: Optional[int] = None
        self.last_seconds = 0.0

    def evaluate(self, runner: Runner) -> Dict[str, float]:
        state = get_rng_state()
        start = time.perf_counter()
        try:
            train_loader, val_loader = self._loaders(runner)
            kw = dict(stage=self.stage, pool=self.pool, progress=False)
            train_f, train_y = extract_features(runner.model, train_loader, **kw)
            val_f, val_y = extract_features(runner.model, val_loader, **kw)
            top1 = linear_probe(train_f, train_y, val_f, val_y, self.weight_decay,
                                self.max_iter, self.num_classes)
        finally:
            set_rng_state(state)
        self.last_seconds = time.perf_counter() - start
        step = runner.epoch + 1 if self.by_epoch else runner.iter + 1
        if self.best_top1 is None or top1 > self.best_top1:
            self.best_top1, self.best_step = top1, step
        res = dict(top1=top1, best_top1=self.best_top1)
        for key, value in res.items():
            runner.message_hub.update_scalar(f'linear_probe/{key}', value)
        runner.visualizer.add_scalars({f'linear_probe/{k}': v for k, v in res.items()},
                                      step=step)
        runner.logger.info(
            f'online linear probe ({"epoch" if self.by_epoch else "iter"} {step}): top1 '
            f'{top1:.2f} (best {self.best_top1:.2f} at {self.best_step}; '
            f'{self.last_seconds:.1f} s)')
        self.last_results = res
        return res

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.best_top1 is not None:
            checkpoint[CHECKPOINT_KEY] = dict(best_top1=float(self.best_top1),
                                              best_step=int(self.best_step))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved:
            self.best_top1 = float(saved['best_top1'])
            self.best_step = int(saved['best_step'])
