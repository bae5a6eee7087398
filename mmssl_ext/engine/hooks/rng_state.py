"""Exact resume: the random number generators travel in the checkpoint.

mmengine's ``Runner.resume`` restores the weights (and buffers: memory bank, MoCo's queue, the
momentum encoder), the optimizer, the parameter schedulers, the message hub and the seed, but not
the *state* of the random number generators: a resumed run starts from the seed.
``IterBasedTrainLoop.run`` then skips the ``k`` trained batches by fetching them again
(``next(dataloader_iterator)`` ``k`` times), which replays the data pipeline and its draws, so a
generator that only the pipeline uses (here numpy's: our pretext transforms and mmpretrain's
augmentations) comes out right; but every draw made *outside* the pipeline during the ``k``
trained iterations is missing (PIRL's negatives: ``torch.randint``; MoCo's batch shuffle:
``torch.randperm``; Mixup / CutMix: ``np.random.beta`` + ``torch.randperm``; the seed torch draws
for each ``DataLoader`` iterator), so from iteration ``k + 1`` on the generators are out of step
and the run diverges.  Restoring the saved states *before* the advance is no fix either: the
advance would then consume them once more (``num_workers=0``).

:class:`RNGStateHook` closes the gap:

* ``before_save_checkpoint``: the states of python's ``random``, numpy's global generator, torch's
  CPU generator and (when CUDA is available) every CUDA generator are written to
  ``checkpoint['rng_state']`` as tensors, numbers and strings only, so the checkpoint still loads
  with ``torch.load(weights_only=True)`` (:func:`mmssl_ext.utils.checkpoint.load_checkpoint_safe`).
  Under DDP every rank's state is stored as ``ranks[r]``: ``Runner.save_checkpoint`` runs on rank
  0 only, so the hook gathers the states of all ranks (``all_gather_object``, every rank takes
  part) in ``after_train_iter`` / ``after_train_epoch`` just before ``CheckpointHook`` (priority
  85 < 90), and only when that hook is about to save (the pattern of
  :class:`~mmssl_ext.engine.hooks.rank_state.PerRankStateHook`, which this hook is).
* on resume (``after_load_checkpoint`` + ``before_train`` with ``runner.iter > 0``): the states
  are restored *after* mmengine's dataloader advance, immediately before the first new batch is
  fetched.  The train loop's ``dataloader_iterator`` is wrapped for exactly the ``k`` advance
  fetches; the wrapper restores the generators when the loop asks for batch ``k + 1`` and then
  puts the original iterator back.  (A loop without ``dataloader_iterator``, e.g.
  ``EpochBasedTrainLoop``, does not advance: the states are restored in ``before_train``.)
* validation is made RNG-neutral (``before_val`` saves the local states, ``after_val`` puts them
  back): ``IterBasedTrainLoop`` validates *after* the checkpoint of the same iteration was
  written, a resumed run does not repeat that validation, so its RNG draws (e.g. the seed torch
  draws whenever a ``DataLoader`` iterator is created) must not leak into training.

The sampler position needs nothing extra: mmengine's advance replays the sampler (``DefaultSampler``
re-seeds with ``seed + epoch`` on every epoch, ``InfiniteSampler`` is a deterministic stream), and
every other piece of state a method keeps (``MemoryBank.feats``, MoCo's ``queue`` / ``queue_ptr``,
the momentum encoder) is a registered buffer or sub-module, hence in the ``state_dict``.  No
training code of mmssl_ext draws from a private ``torch.Generator`` / ``np.random.Generator``
(the memory bank samples negatives from torch's global generator, the pretext transforms use
``np.random``), so the global generators are the complete random state of a run.

Exactness: with ``num_workers=0`` and deterministic kernels (every CPU op used here) a run
interrupted after ``k`` iterations and resumed gives bit-identical losses and weights
(``tests/cli/test_exact_resume.py``).  With ``num_workers > 0`` the pipeline runs in worker
processes whose generators mmengine seeds with ``num_workers * rank + worker_id + seed``, batches
go to the workers round-robin, and the advance replays them batch by batch, so the resumed stream
is the same too (checked bitwise for PIRL with 2 workers, persistent or not, resuming mid-epoch
and at an epoch boundary); this needs a fixed ``randomness.seed`` (with ``seed=None`` each run
draws a new one and the workers' seeds differ).  The same holds under DDP (checked bitwise with 2
gloo processes).  On GPUs, kernels without a deterministic implementation
(atomics in ``index_add_`` / scatter, cuDNN autotuning) make even two uninterrupted runs differ;
use ``randomness=dict(seed=..., deterministic=True)``.  ``EpochBasedTrainLoop`` only resumes
exactly from end-of-epoch checkpoints (mmengine restarts an interrupted epoch from its start).

Usage: the runtime base (``configs/_base_/default_runtime.py``) adds it to every run; by hand::

    custom_hooks = [dict(type='RNGStateHook')]
"""
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.logging import print_log

from mmssl_ext.registry import ROOT_HOOKS
from .rank_state import PerRankStateHook

RNG_STATE_KEY = 'rng_state'

__all__ = ['RNG_STATE_KEY', 'RNGStateHook', 'add_exact_resume_hooks', 'get_rng_state',
           'set_rng_state']


# ------------------------------------------------------------------------------ states


def get_rng_state() -> Dict[str, Any]:
    """The states of this process's global generators as tensors, numbers and strings.

    Keys: ``python`` (``random``), ``numpy`` (``np.random``'s legacy global ``RandomState``),
    ``torch`` (CPU ``ByteTensor``) and, when CUDA is available, ``cuda`` (one ``ByteTensor`` per
    device).  Nothing is drawn: reading a state does not advance it.
    """
    py_version, py_state, py_gauss = random.getstate()
    bit_generator, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: Dict[str, Any] = dict(
        python=dict(version=int(py_version),
                    state=torch.tensor(py_state, dtype=torch.int64),
                    gauss_next=None if py_gauss is None else float(py_gauss)),
        numpy=dict(bit_generator=str(bit_generator),
                   state=torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss),
                   cached_gaussian=float(cached_gaussian)),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available():
        state['cuda'] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore the generators from :func:`get_rng_state`'s output (keys that are absent are left
    alone; tensors may come back on another device, e.g. after ``map_location='cuda'``)."""
    if 'python' in state:
        py = state['python']
        gauss = py.get('gauss_next')
        random.setstate((int(py['version']),
                         tuple(int(x) for x in torch.as_tensor(py['state']).tolist()),
                         None if gauss is None else float(gauss)))
    if 'numpy' in state:
        st = state['numpy']
        keys = torch.as_tensor(st['state']).cpu().numpy().astype(np.uint32)
        np.random.set_state((str(st['bit_generator']), keys, int(st['pos']),
                             int(st['has_gauss']), float(st['cached_gaussian'])))
    if 'torch' in state:
        torch.set_rng_state(torch.as_tensor(state['torch']).cpu().to(torch.uint8))
    cuda_states = state.get('cuda')
    if cuda_states and torch.cuda.is_available():
        n = torch.cuda.device_count()
        if len(cuda_states) != n:
            print_log(f'RNGStateHook: the checkpoint holds {len(cuda_states)} CUDA generator '
                      f'states, this process sees {n} devices; restoring the first '
                      f'{min(n, len(cuda_states))}', logger='current', level='WARNING')
        for i, s in enumerate(cuda_states[:n]):
            torch.cuda.set_rng_state(torch.as_tensor(s).cpu().to(torch.uint8), i)


# ------------------------------------------------------------------------------ hook


class _RestoreAfterAdvance:
    """Stands in for ``IterBasedTrainLoop.dataloader_iterator`` during mmengine's advance.

    It passes the first ``skip`` fetches (the advance) through; on the next one it restores the
    generators, puts the loop's own iterator back and fetches the first new batch.
    """

    def __init__(self, loop, iterator, skip: int, state: Dict[str, Any]) -> None:
        self._loop = loop
        self._iterator = iterator
        self._remaining = skip
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        if self._remaining > 0:
            self._remaining -= 1
            return next(self._iterator)
        set_rng_state(self._state)
        self._loop.dataloader_iterator = self._iterator
        return next(self._iterator)


@ROOT_HOOKS.register_module()
class RNGStateHook(PerRankStateHook):
    """Save the global RNG states in every checkpoint and restore them on resume.

    See the module docstring for what is saved, where it is restored and why.

    Args:
        isolate_val: run validation on a copy of the generators' states (``before_val`` saves,
            ``after_val`` restores), so that validating does not shift the training stream and a
            resumed run, which does not repeat the validation of its checkpoint's iteration,
            stays exact.  Default ``True``.
    """

    # after_train_iter / after_train_epoch run just before CheckpointHook's (VERY_LOW = 90)
    priority = 85
    checkpoint_key = RNG_STATE_KEY

    def __init__(self, isolate_val: bool = True) -> None:
        super().__init__()
        self.isolate_val = isolate_val
        self._val_state: Optional[Dict[str, Any]] = None

    # ---- save
    def local_state(self, runner) -> Dict[str, Any]:
        return get_rng_state()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        local = get_rng_state()
        # off CheckpointHook's schedule under DDP (e.g. the best checkpoint): this rank's only
        ranks: List[Dict[str, Any]] = self.states_to_save(runner, local) or [local]
        checkpoint[RNG_STATE_KEY] = dict(world_size=get_world_size(), ranks=ranks)

    # ---- resume
    def _state_for_this_rank(self, runner) -> Optional[Dict[str, Any]]:
        resumed, saved = self.take_resumed_entry(runner)
        if not resumed:  # a fresh run, load_from (fine-tuning), or another checkpoint
            return None
        if saved is None:
            print_log('RNGStateHook: the resumed checkpoint holds no RNG state (written without '
                      'RNGStateHook?); the resumed run draws different random numbers than an '
                      'uninterrupted one', logger='current', level='WARNING')
            return None
        world_size, ranks = int(saved['world_size']), saved['ranks']
        if world_size != get_world_size():
            print_log(f'RNGStateHook: the checkpoint was written by {world_size} processes, this '
                      f'run has {get_world_size()}; RNG states are not restored (the data split '
                      f'differs anyway, the resume cannot be exact)', logger='current',
                      level='WARNING')
            return None
        if len(ranks) != world_size:
            print_log(f'RNGStateHook: the checkpoint holds the RNG state of {len(ranks)} of its '
                      f'{world_size} processes (not written by CheckpointHook?); RNG states are '
                      f'not restored', logger='current', level='WARNING')
            return None
        return ranks[get_rank()]

    def before_train(self, runner) -> None:
        state = self._state_for_this_rank(runner)
        if state is None:
            return
        loop = runner.train_loop
        iterator = getattr(loop, 'dataloader_iterator', None)
        if iterator is None:  # EpochBasedTrainLoop & co.: no advance, restore now
            set_rng_state(state)
            return
        # IterBasedTrainLoop.run fetches runner.iter batches after before_train_epoch to skip the
        # trained data; restore when the first batch after them is fetched
        loop.dataloader_iterator = _RestoreAfterAdvance(loop, iterator, runner.iter, state)

    # ---- validation leaves the training stream alone
    def before_val(self, runner) -> None:
        if self.isolate_val:
            self._val_state = get_rng_state()

    def after_val(self, runner) -> None:
        if self.isolate_val and self._val_state is not None:
            set_rng_state(self._val_state)
            self._val_state = None


def add_exact_resume_hooks(cfg):
    """Append ``dict(type='RNGStateHook')`` to ``cfg.custom_hooks`` unless one is there, and make
    mmpretrain's ``SwAVHook`` a ``ResumableSwAVHook`` (same arguments; its queue then travels in
    the checkpoint: :mod:`mmssl_ext.engine.hooks.swav_queue`); returns ``cfg``.

    The runtime base (``configs/_base_/default_runtime.py``) declares both for every config; this
    is the same for a config built by hand.
    """
    from mmssl_ext.engine.runner import add_runtime_hooks, use_resumable_swav
    use_resumable_swav(cfg)
    add_runtime_hooks(cfg, [dict(type='RNGStateHook')])
    return cfg
