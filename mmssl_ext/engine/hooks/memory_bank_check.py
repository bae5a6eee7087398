"""``MemoryBankSizeCheckHook``: a memory bank must hold one entry per training image.

A :class:`~mmssl_ext.models.memories.MemoryBank` is indexed by the dataset index
(``sample_idx``) of every sample.  With ``length`` smaller than the training set, the first batch
that holds an index ``>= length`` fails with an ``IndexError``, possibly hours into the run (an
unshuffled epoch reaches the last images at its end).  The model cannot check this itself: it is
built without the dataset.  This hook checks every memory bank of the model against the training
set in ``before_train`` (after the dataloader is built, before the first iteration) and names
the config key to set::

    ValueError: the memory bank model.memory_bank has length 10000 but the training set
    (train_dataloader.dataset, ImageNet) has 1281167 samples: every sample needs its own entry.
    Set --cfg-options model.memory_bank.length=1281167

A bank longer than the training set works (the extra rows are never updated, yet drawn as
negatives) and is logged as a warning.  The runtime base (``ssl_runtime.hooks``) adds the hook
to every config (see :func:`mmssl_ext.engine.runner.add_runtime_hooks`); for a model without a
memory bank it does nothing.
"""
import logging
from typing import List, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop

from mmssl_ext.engine.data_sizing import (META_KEY, check_resume, data_sized_modules,
                                          num_sample_indices)
from mmssl_ext.models.memories.data_sized import unset_size_error
from mmssl_ext.registry import ROOT_HOOKS

__all__ = ['MemoryBankSizeCheckHook', 'memory_banks', 'num_sample_indices']


def memory_banks(model) -> List[Tuple[str, object]]:
    """``(module name, bank)`` for every ``MemoryBank`` in ``model``."""
    from mmssl_ext.models.memories.memory_bank import MemoryBank
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MemoryBank)]


@ROOT_HOOKS.register_module()
class MemoryBankSizeCheckHook(Hook):
    """Fail before the first iteration when a memory bank is shorter than the training set, and
    before a resume whose training set changed size since the checkpoint."""

    priority = 'VERY_HIGH'

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # a checkpoint saved outside training (no train loop built) has no training set to record
        if not isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            return
        if data_sized_modules(self._model(runner)):
            checkpoint.setdefault('meta', {})[META_KEY] = num_sample_indices(
                runner.train_dataloader.dataset)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Before the checkpoint's state enters the model (mmengine's ``load_checkpoint``)."""
        if hasattr(runner, 'resuming_from'):  # SSLRunner: the file while it resumes, else None
            filename = runner.resuming_from
        else:  # mmengine's Runner loads a checkpoint only to resume when resume=True
            filename = 'being resumed' if getattr(runner, '_resume', False) else None
        model = self._model(runner)
        if filename is None or not data_sized_modules(model):
            return
        check_resume(model, checkpoint, num_sample_indices(runner.train_dataloader.dataset),
                     filename)

    def before_train(self, runner) -> None:
        banks = memory_banks(self._model(runner))
        if not banks:
            return
        dataset = runner.train_dataloader.dataset
        n = num_sample_indices(dataset)
        for name, bank in banks:
            key = f'model.{name}.length'
            if bank.length is None:
                raise unset_size_error(f'the memory bank model.{name}', key)
            if bank.length < n:
                raise ValueError(
                    f'the memory bank model.{name} has length {bank.length} but the training set '
                    f'(train_dataloader.dataset, {type(dataset).__name__}) has {n} samples: every '
                    f'sample needs its own entry (an index >= {bank.length} would fail mid-run). '
                    f'Set --cfg-options {key}={n}')
            if bank.length > n:
                print_log(f'MemoryBankSizeCheckHook: the memory bank model.{name} has length '
                          f'{bank.length} for a training set of {n} samples; the '
                          f'{bank.length - n} extra rows are never updated but drawn as '
                          f'negatives (set {key}={n})', logger='current', level=logging.WARNING)
