"""Online weighted-kNN evaluation of the backbone during (self-supervised) pre-training."""
from typing import Dict, Optional, Sequence, Union

from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmssl_ext.evaluation.features import extract_features
from mmssl_ext.evaluation.knn import knn_evaluate
from mmssl_ext.registry import HOOKS
from mmssl_ext.utils.config import build_dataloader


@HOOKS.register_module()
class KNNEvalHook(Hook):
    """Evaluate the backbone with weighted kNN every ``interval`` epochs (or iterations).

    The train-set features are the kNN memory, the val-set features the queries; see
    :func:`mmssl_ext.evaluation.knn_evaluate`.  Results are logged and written to the message hub
    as ``knn/k{k}_top{t}`` scalars (so they reach every visualiser backend).  DDP: each rank
    extracts its shard, shards are all-gathered, every rank gets the same numbers.

    Args:
        train_dataloader: dataloader config (or loader) of the labelled memory set; use a
            deterministic test pipeline and ``sampler=dict(type='DefaultSampler', shuffle=False)``.
        val_dataloader: dataloader config (or loader) of the query set.
        interval: evaluate every ``interval`` epochs (``by_epoch=True``) or iterations.
        by_epoch: epoch- or iteration-based interval.
        ks: the ``k`` values. temperature: the voting temperature ``T``.
        topk: which top-k accuracies to report.
        stage: backbone output index; pool: ``'avg'``/``'max'``.
        evaluate_at_end: also evaluate after the last epoch/iteration when it is not a multiple
            of ``interval``.

    Example (config)::

        custom_hooks = [dict(type='KNNEvalHook', interval=10,
                             train_dataloader=knn_train_dataloader,
                             val_dataloader=knn_val_dataloader)]
    """

    priority = 'LOW'

    def __init__(self,
                 train_dataloader: Union[dict, object],
                 val_dataloader: Union[dict, object],
                 interval: int = 1,
                 by_epoch: bool = True,
                 ks: Sequence[int] = (20, 200),
                 temperature: float = 0.07,
                 topk: Sequence[int] = (1, 5),
                 stage: int = -1,
                 pool: str = 'avg',
                 evaluate_at_end: bool = True,
                 num_classes: Optional[int] = None):
        if interval < 1:
            raise ValueError(f'KNNEvalHook: interval must be >= 1, got {interval}')
        self._train_loader_cfg = train_dataloader
        self._val_loader_cfg = val_dataloader
        self._train_loader = None
        self._val_loader = None
        self.interval = interval
        self.by_epoch = by_epoch
        self.ks = tuple(ks)
        self.temperature = temperature
        self.topk = tuple(topk)
        self.stage = stage
        self.pool = pool
        self.evaluate_at_end = evaluate_at_end
        self.num_classes = num_classes
        self.last_results: Dict[str, float] = {}

    def _loaders(self, runner: Runner):
        if self._train_loader is None:
            self._train_loader = build_dataloader(self._train_loader_cfg, seed=runner.seed)
            self._val_loader = build_dataloader(self._val_loader_cfg, seed=runner.seed)
        return self._train_loader, self._val_loader

    def evaluate(self, runner: Runner) -> Dict[str, float]:
        train_loader, val_loader = self._loaders(runner)
        kw = dict(stage=self.stage, pool=self.pool, progress=False)
        train_f, train_y = extract_features(runner.model, train_loader, **kw)
        val_f, val_y = extract_features(runner.model, val_loader, **kw)
        res = knn_evaluate(train_f, train_y, val_f, val_y, ks=self.ks,
                           temperature=self.temperature, topk=self.topk,
                           num_classes=self.num_classes)
        # hooks run before the loop increments its counter: report completed epochs/iterations
        step = runner.epoch + 1 if self.by_epoch else runner.iter + 1
        for key, value in res.items():
            runner.message_hub.update_scalar(f'knn/{key}', value)
        runner.visualizer.add_scalars({f'knn/{k}': v for k, v in res.items()}, step=step)
        runner.logger.info(
            f'kNN ({"epoch" if self.by_epoch else "iter"} {step}, T={self.temperature}): ' +
            ', '.join(f'{k}: {v:.2f}' for k, v in res.items()))
        self.last_results = res
        return res

    def after_train_epoch(self, runner: Runner) -> None:
        if not self.by_epoch:
            return
        if self.every_n_epochs(runner, self.interval) or (
                self.evaluate_at_end and self.is_last_train_epoch(runner)):
            self.evaluate(runner)

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self.by_epoch:
            return
        if self.every_n_train_iters(runner, self.interval) or (
                self.evaluate_at_end and runner.iter + 1 == runner.max_iters):
            self.evaluate(runner)
