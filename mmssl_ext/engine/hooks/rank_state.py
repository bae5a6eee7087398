"""Per-process state in the checkpoint: the DDP save / resume pattern shared by our exact-resume
hooks (:class:`~mmssl_ext.engine.hooks.RNGStateHook`: the random generators;
:class:`~mmssl_ext.engine.hooks.ResumableSwAVHook`: SwAV's feature queue).

Some state differs per process and lives outside the model's ``state_dict``, yet a resumed run
needs all of it.  ``Runner.save_checkpoint`` runs on rank 0 only, and a collective there would
hang the other ranks, so :class:`PerRankStateHook`:

* gathers every rank's state in ``after_train_iter`` / ``after_train_epoch``, which all ranks
  run, just before ``CheckpointHook`` (the subclass's priority must be lower than its
  ``VERY_LOW``), and only when that hook is about to save (:func:`checkpoint_due`: no
  collective on the other iterations);
* hands the subclass the list of all ranks' states in ``before_save_checkpoint``
  (:meth:`PerRankStateHook.states_to_save`);
* on resume keeps the checkpoint's entry (``after_load_checkpoint``) and gives it to the
  subclass in ``before_train`` only when the run really continues from that checkpoint:
  ``runner.iter > 0`` (not a fresh run, not ``load_from``) and the checkpoint's ``meta.iter``
  equal to ``runner.iter`` (:meth:`PerRankStateHook.take_resumed_entry`).

What the state is, how it is gathered, and what to do with it off the checkpoint schedule or
with another number of processes stays with each subclass.
"""
from typing import Any, List, Optional, Tuple

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook

__all__ = ['PerRankStateHook', 'checkpoint_due']


def checkpoint_due(runner, by_epoch: bool) -> bool:
    """Whether a ``CheckpointHook`` of the runner saves at the end of this iteration / epoch
    (its own conditions, asked before it runs)."""
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or bool(hook.by_epoch) != by_epoch:
            continue
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner))
        else:
            due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_iter(runner))
        if due:
            return True
    return False


class PerRankStateHook(Hook):
    """Base of hooks whose per-process state goes into ``checkpoint[checkpoint_key]``.

    A subclass sets :attr:`checkpoint_key`, implements :meth:`local_state` (``None``: nothing to
    save now, the same on every rank), may override :meth:`all_gather_states` (default
    ``all_gather_object``), and writes / reads its entry with :meth:`states_to_save` and
    :meth:`take_resumed_entry`.  The hook methods call ``super()``, so the class can come first
    among the bases of a subclass of another hook (``ResumableSwAVHook(PerRankStateHook,
    SwAVHook)``).
    """

    checkpoint_key: str = ''

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._gathered: Optional[Tuple[int, List[Any]]] = None
        self._loaded: Any = None
        self._loaded_iter: Optional[int] = None

    # ---- to implement
    def local_state(self, runner) -> Any:
        """This process's state to save, or ``None`` when there is nothing to save."""
        raise NotImplementedError

    def all_gather_states(self, local: Any) -> List[Any]:
        """Every rank's ``local``, on every rank (a collective: all ranks call it)."""
        return all_gather_object(local)

    # ---- save
    def _gather_if_due(self, runner, by_epoch: bool) -> None:
        self._gathered = None
        if get_world_size() > 1 and checkpoint_due(runner, by_epoch):
            local = self.local_state(runner)
            if local is not None:
                self._gathered = (runner.iter, self.all_gather_states(local))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        self._gather_if_due(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        super().after_train_epoch(runner)
        self._gather_if_due(runner, by_epoch=True)

    def states_to_save(self, runner, local: Any) -> Optional[List[Any]]:
        """Every rank's state for the checkpoint being written (this rank's entry is ``local``):
        ``[local]`` on one process; under DDP the states gathered for this iteration, or ``None``
        when the save was not ``CheckpointHook``'s (e.g. a best-checkpoint save), so that only
        this rank's state is at hand."""
        if get_world_size() == 1:
            return [local]
        if self._gathered is None or self._gathered[0] != runner.iter:
            return None
        states = list(self._gathered[1])
        states[get_rank()] = local
        return states

    # ---- resume
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        super().after_load_checkpoint(runner, checkpoint)
        self._loaded = checkpoint.get(self.checkpoint_key)
        self._loaded_iter = (checkpoint.get('meta') or {}).get('iter')

    def take_resumed_entry(self, runner) -> Tuple[bool, Any]:
        """``(resumed, entry)`` for ``before_train`` (the kept entry is dropped either way).

        ``resumed`` is ``False`` for a fresh run or ``load_from`` (``runner.iter == 0``) and for
        a checkpoint other than the one the run continues from (its ``meta.iter`` differs);
        ``entry`` is ``checkpoint[checkpoint_key]``, ``None`` when the checkpoint has none.
        """
        entry, self._loaded = self._loaded, None
        if runner.iter == 0:
            return False, None
        if self._loaded_iter is not None and self._loaded_iter != runner.iter:
            return False, None
        return True, entry
