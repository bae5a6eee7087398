"""SeLa's label-optimisation hook: Sinkhorn-Knopp on every head's outputs, on SeLa's schedule."""
import math
import time
from typing import Optional, Sequence

import torch
from mmengine.dist import broadcast, get_world_size

from mmssl_ext.engine.hooks.cluster_common import (ScheduledRefreshHook, check_pipeline,
                                                   check_sizes, unwrap_model)
from mmssl_ext.models.heads.sela_head import sela_sinkhorn
from mmssl_ext.registry import HOOKS


def sela_schedule(num_opts: int, num_samples: int, epoch_len: int, max_iters: int,
                  batch_size: int):
    """The official ``optimize_times``: label optimisations after ``(E + 1.01) N (j / (n-1))^2``
    samples, ``j = 0 .. n-1`` (quadratically denser early), as the first iteration ``it`` with
    ``it * batch_size`` at or past it; those past the run are dropped."""
    epochs = max_iters / epoch_len
    times = [(epochs + 1.01) * num_samples * (j / max(num_opts - 1, 1)) ** 2
             for j in range(num_opts)]
    return sorted({math.ceil(t / batch_size) for t in times} & set(range(max_iters)))


@HOOKS.register_module()
class SeLaHook(ScheduledRefreshHook):
    """SeLa's label optimisation, as the official ``cpu_sk`` / ``optimize_L_sk``.

    ``num_opts`` times in a run (:func:`sela_schedule`; the first before iteration 0): pooled
    features of the whole training set (``pipeline``; the official code uses the training
    augmentation), every head's softmax, :func:`sela_sinkhorn` with ``lamb`` per head, the
    argmax labels broadcast from rank 0 and written to ``pseudo_labels``.

    Args:
        pipeline: extraction pipeline.  num_opts: optimisations per run (100).
        lamb: the Sinkhorn ``lambda`` (25).  tol: its stopping error (0.1).
        batch_size / num_workers: of the extraction loader.
    """

    def __init__(self, pipeline: Sequence[dict], num_opts: int = 100, lamb: float = 25.0,
                 tol: float = 0.1, max_sinkhorn_iters: int = 1000, batch_size: int = 256,
                 num_workers: Optional[int] = None) -> None:
        self.pipeline = check_pipeline(pipeline, 'SeLaHook')
        if isinstance(num_opts, bool) or not isinstance(num_opts, int) or num_opts < 1:
            raise ValueError(f'SeLaHook: num_opts must be an int >= 1, got {num_opts!r}')
        if lamb <= 0:
            raise ValueError(f'SeLaHook: lamb must be positive, got {lamb}')
        self.num_opts = num_opts
        self.lamb = float(lamb)
        self.tol = float(tol)
        self.max_sinkhorn_iters = max_sinkhorn_iters
        self.batch_size = batch_size
        self.num_workers = num_workers

    def _model(self, runner):
        model = unwrap_model(runner.model)
        if not hasattr(model, 'set_pseudo_labels') or not hasattr(model.head, 'fcs'):
            raise TypeError(f'SeLaHook needs a SeLa model, got {type(model).__name__}')
        return model

    def refresh_iters(self, runner):
        model = self._model(runner)
        check_sizes('SeLaHook', model.num_samples, 'model.num_samples', model.head.num_classes,
                    'model.head.num_classes', runner)
        batch = runner.train_dataloader.batch_size * get_world_size()
        return sela_schedule(self.num_opts, model.num_samples, len(runner.train_dataloader),
                             runner.max_iters, batch)

    def refresh(self, runner, it: int) -> None:
        model = self._model(runner)
        t0 = time.perf_counter()
        feats = self.extract(runner, model.num_samples, normalize=False)
        labels, steps = [], []
        for fc in model.head.fcs:  # every rank the same (gathered) matrix
            logits = feats.double() @ fc.weight.detach().double().cpu().t() + \
                fc.bias.detach().double().cpu()
            lab, _, n_it, err = sela_sinkhorn(logits, self.lamb, self.tol,
                                              max_iters=self.max_sinkhorn_iters)
            if err > self.tol:
                runner.logger.warning(
                    f'SeLaHook: iteration {it}: Sinkhorn-Knopp stopped at max_sinkhorn_iters='
                    f'{n_it} with the cluster marginals off by {err:.3g} > tol={self.tol}; the '
                    f'labels are the plan as it is (raise max_sinkhorn_iters or lower lamb)')
            labels.append(lab)
            steps.append(n_it)
        labels = torch.stack(labels)
        if get_world_size() > 1:
            broadcast(labels, src=0)
        model.set_pseudo_labels(labels)
        runner.logger.info(f'SeLaHook: iteration {it}: labels of {len(steps)} heads '
                           f'(K={model.head.num_classes}) by Sinkhorn-Knopp in {steps} '
                           f'iterations ({time.perf_counter() - t0:.1f} s)')
