"""PerRankStateHook: the DDP save / resume pattern shared by RNGStateHook and ResumableSwAVHook.

The end-to-end exactness of both hooks is tested in tests/cli/test_exact_resume.py and
tests/engine/test_swav_queue_hook.py; here the base's own contract: when it gathers, what it
hands over for a save, and when a loaded entry counts as a resume.
"""
import os.path as osp
from types import SimpleNamespace

import torch
import torch.multiprocessing as mp
from mmengine.hooks import CheckpointHook

from mmssl_ext.engine.hooks import PerRankStateHook
from tests.helpers import free_port, gloo_group


class _Counter(PerRankStateHook):
    """Its state is a tensor that names the rank and the iteration; counts its collectives."""

    checkpoint_key = 'counter'

    def __init__(self, rank):
        super().__init__()
        self.rank = rank
        self.gathers = 0

    def local_state(self, runner):
        return torch.tensor([self.rank, runner.iter])

    def all_gather_states(self, local):
        self.gathers += 1
        return super().all_gather_states(local)


def _runner(iteration, max_iters=7):
    return SimpleNamespace(iter=iteration, max_iters=max_iters,
                           hooks=[CheckpointHook(interval=3, by_epoch=False)])


def test_take_resumed_entry_only_for_the_checkpoint_the_run_continues_from():
    hook = _Counter(rank=0)
    entry = dict(world_size=1, ranks=['x'])
    # a true resume: the checkpoint of iteration 4, the run continues at 4
    hook.after_load_checkpoint(_runner(4), dict(counter=entry, meta=dict(iter=4)))
    assert hook.take_resumed_entry(_runner(4)) == (True, entry)
    assert hook.take_resumed_entry(_runner(4)) == (True, None)  # taken once, then gone
    # load_from: the weights of a trained run, a fresh schedule
    hook.after_load_checkpoint(_runner(0), dict(counter=entry, meta=dict(iter=4)))
    assert hook.take_resumed_entry(_runner(0)) == (False, None)
    # a checkpoint other than the one resumed from
    hook.after_load_checkpoint(_runner(6), dict(counter=entry, meta=dict(iter=4)))
    assert hook.take_resumed_entry(_runner(6)) == (False, None)
    # resumed from a checkpoint without the entry: a resume, nothing to restore
    hook.after_load_checkpoint(_runner(4), dict(meta=dict(iter=4)))
    assert hook.take_resumed_entry(_runner(4)) == (True, None)


def test_one_process_saves_its_own_state_without_collectives():
    hook = _Counter(rank=0)
    for i in range(7):
        hook.after_train_iter(_runner(i), i)
    assert hook.gathers == 0
    local = hook.local_state(_runner(5))
    assert hook.states_to_save(_runner(5), local) == [local]


def _ddp_worker(rank, port, out_dir):
    with gloo_group(rank, port, 2):
        hook = _Counter(rank)
        saved = {}
        # after_train_iter of iteration i + 1 (runner.iter is still i there, and in the save
        # CheckpointHook makes right after): it saves after iterations 3, 6 and 7 (the last)
        for i in range(7):
            runner = _runner(i)
            hook.after_train_iter(runner, i)
            states = hook.states_to_save(runner, hook.local_state(runner))
            saved[i] = None if states is None else torch.stack(states)
        torch.save(dict(saved=saved, gathers=hook.gathers), osp.join(out_dir, f'rank{rank}.pth'))


def test_ddp_gathers_every_rank_only_when_checkpoint_hook_saves(tmp_path):
    # fork: the workers inherit the imported modules (spawn would re-import mmssl_ext)
    mp.start_processes(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in range(2))
    due = [i for i in range(7) if (i + 1) % 3 == 0 or i == 6]
    assert due == [2, 5, 6]
    for r in (r0, r1):
        assert r['gathers'] == len(due)  # no collective on the other iterations
        for i in range(7):
            if i in due:  # every rank's state, in rank order, of this iteration
                assert torch.equal(r['saved'][i], torch.tensor([[0, i], [1, i]]))
            else:  # not CheckpointHook's save: only this rank's state is at hand
                assert r['saved'][i] is None
