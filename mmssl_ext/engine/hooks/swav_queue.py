"""SwAV's feature queue in the checkpoint, so that a resumed SwAV run continues as if never stopped.

mmpretrain's ``SwAVHook`` (reused here, not rewritten) builds SwAV's queue of past features and
keeps it in ``<work_dir>/queue.pth`` (``queue<rank>.pth`` under DDP), a file written only at the
end of an epoch: for an ``IterBasedTrainLoop`` that is the end of the whole run.  A run killed
mid-way therefore resumes with an empty queue, and a run resumed from an older checkpoint picks
up a newer queue file; either way the resumed run differs from an uninterrupted one.  The queue
is per process (each rank stores its own features, as in the official code), not a buffer of the
model, so it is not in the ``state_dict`` either.

:class:`ResumableSwAVHook` is ``SwAVHook`` plus the checkpoint round trip (DESIGN: everything a
resumed run needs is in the checkpoint):

* ``before_save_checkpoint``: ``checkpoint['swav_queue'] = dict(world_size=W, queues=[q_0, ...,
  q_{W-1}])``, one ``(crops, queue_length // W, feat_dim)`` tensor per rank, on the CPU (tensors
  and ints only: the checkpoint still loads with ``torch.load(weights_only=True)``).  Under DDP
  ``Runner.save_checkpoint`` runs on rank 0 only, so every rank's queue is all-gathered in
  ``after_train_iter`` / ``after_train_epoch`` just before ``CheckpointHook`` runs (priority
  NORMAL < VERY_LOW), and only when that hook is about to save (the pattern of
  :class:`~mmssl_ext.engine.hooks.rank_state.PerRankStateHook`, shared with ``RNGStateHook``).
* on resume (``after_load_checkpoint`` + ``before_train`` with ``runner.iter > 0``) each rank
  takes its own queue back; the checkpoint wins over a ``queue.pth`` that ``SwAVHook.before_run``
  read from the work dir.  Resumed with another number of processes, the saved queues are
  concatenated and split evenly again (the total length is the config's either way).  ``load_from``
  (``runner.iter == 0``: fine-tuning from a SwAV checkpoint) leaves the queue alone.

``use_queue`` needs no saving: ``SwAVLoss`` switches it on at the first step that finds the
queue's last row filled, which a restored full queue has.

Usage: the Fashion-MNIST SwAV config names it; in any SwAV config, replace the hook's type::

    custom_hooks = [dict(type='ResumableSwAVHook', batch_size=32, ...)]  # SwAVHook's arguments

The runtime base (``ssl_runtime.resumable_swav``, :mod:`mmssl_ext.engine.runner`) swaps a
``SwAVHook`` for it in every config that inherits it.
"""
from typing import Any, Dict, List

import torch
from mmengine.device import get_device
from mmengine.dist import all_gather, get_rank, get_world_size
from mmengine.logging import print_log
from mmpretrain.engine.hooks import SwAVHook
from mmpretrain.utils import get_ori_model

from mmssl_ext.registry import HOOKS
from .rank_state import PerRankStateHook

SWAV_QUEUE_KEY = 'swav_queue'

__all__ = ['ResumableSwAVHook', 'SWAV_QUEUE_KEY', 'split_saved_queues']


def split_saved_queues(saved: Dict[str, Any], world_size: int, rank: int) -> torch.Tensor:
    """This rank's queue from ``checkpoint['swav_queue']``.

    Same number of processes: the rank's own queue.  Another number: the saved queues are
    concatenated along the queue axis (rank 0's first, each newest first) and split into
    ``world_size`` equal parts.  Raises ``ValueError`` naming the key and the shapes when the
    entry is incomplete or its length does not split.
    """
    saved_ws, queues = int(saved['world_size']), list(saved['queues'])
    if len(queues) != saved_ws:
        raise ValueError(f"checkpoint['{SWAV_QUEUE_KEY}'] holds {len(queues)} queues for "
                         f'{saved_ws} processes (written outside CheckpointHook under DDP?)')
    if saved_ws == world_size:
        return queues[rank]
    full = torch.cat(queues, dim=1)
    if full.shape[1] % world_size:
        raise ValueError(f"checkpoint['{SWAV_QUEUE_KEY}']: {saved_ws} queues of shape "
                         f'{tuple(queues[0].shape)} ({full.shape[1]} features in all) do not '
                         f'split evenly over {world_size} processes')
    return full.chunk(world_size, dim=1)[rank]


@HOOKS.register_module()
class ResumableSwAVHook(PerRankStateHook, SwAVHook):
    """mmpretrain's ``SwAVHook`` whose queue is saved in and resumed from the checkpoint.

    Same arguments as ``SwAVHook``; see the module docstring for what is saved and when.
    """

    checkpoint_key = SWAV_QUEUE_KEY

    def _loss_module(self, runner):
        return get_ori_model(runner.model).head.loss_module

    # ---- save
    def local_state(self, runner):
        queue = self._loss_module(runner).queue
        return None if queue is None else queue.detach()

    def all_gather_states(self, local: torch.Tensor) -> List[torch.Tensor]:
        return [q.cpu() for q in all_gather(local)]

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        super().before_save_checkpoint(runner, checkpoint)
        queue = self.local_state(runner)
        if queue is None:  # before epoch_queue_starts, or no queue configured
            return
        queues = self.states_to_save(runner, queue.cpu())
        if queues is None:  # a checkpoint outside CheckpointHook's schedule, under DDP
            print_log(f'ResumableSwAVHook: checkpoint at iteration {runner.iter} was not '
                      f'announced to CheckpointHook; it holds no SwAV queue', logger='current',
                      level='WARNING')
            return
        checkpoint[SWAV_QUEUE_KEY] = dict(world_size=get_world_size(), queues=queues)

    # ---- resume
    def before_train(self, runner) -> None:
        super().before_train(runner)
        resumed, saved = self.take_resumed_entry(runner)
        if not resumed:  # a fresh run, load_from, or not the checkpoint this run resumed from
            return
        if saved is None:
            if self.queue_length > 0:
                print_log('ResumableSwAVHook: the resumed checkpoint holds no SwAV queue (written '
                          'before the queue started, or by SwAVHook); the queue starts '
                          + ('from the work dir\'s queue file' if self.queue is not None
                             else 'empty'), logger='current', level='WARNING')
            return
        queue = split_saved_queues(saved, get_world_size(), get_rank())
        expected = (len(self.crops_for_assign), self.queue_length // get_world_size(),
                    self.feat_dim)
        if tuple(queue.shape) != expected:
            raise ValueError(
                f"checkpoint['{SWAV_QUEUE_KEY}'] gives this process a queue of shape "
                f'{tuple(queue.shape)}; the hook expects {expected} (crops_for_assign='
                f'{list(self.crops_for_assign)}, queue_length={self.queue_length} over '
                f'{get_world_size()} processes, feat_dim={self.feat_dim})')
        self.queue = queue.to(get_device())
        self._loss_module(runner).queue = self.queue
