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

from mmssl_ext.registry import ROOT_HOOKS


def num_sample_indices(dataset) -> int:
    """The number of distinct ``sample_idx`` values ``dataset`` hands out.

    ``len(dataset)`` for a plain dataset (mmengine's ``BaseDataset`` numbers the samples
    ``0 .. len - 1``, after ``indices`` / filtering); wrappers that repeat or resample a dataset
    (``RepeatDataset``, ``ClassBalancedDataset``) hand out the indices of the wrapped one; a
    ``ConcatDataset`` those of its largest part.
    """
    inner = getattr(dataset, 'dataset', None)
    if inner is not None and type(dataset).__name__ in ('RepeatDataset', 'ClassBalancedDataset'):
        return num_sample_indices(inner)
    parts = getattr(dataset, 'datasets', None)
    if parts is not None and type(dataset).__name__ == 'ConcatDataset':
        return max(num_sample_indices(d) for d in parts)
    return len(dataset)


def memory_banks(model) -> List[Tuple[str, object]]:
    """``(module name, bank)`` for every ``MemoryBank`` in ``model``."""
    from mmssl_ext.models.memories.memory_bank import MemoryBank
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MemoryBank)]


@ROOT_HOOKS.register_module()
class MemoryBankSizeCheckHook(Hook):
    """Fail before the first iteration when a memory bank is shorter than the training set."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        banks = memory_banks(model)
        if not banks:
            return
        dataset = runner.train_dataloader.dataset
        n = num_sample_indices(dataset)
        for name, bank in banks:
            key = f'model.{name}.length'
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
