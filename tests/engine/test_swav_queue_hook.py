"""ResumableSwAVHook: SwAV's queue travels in the checkpoint, so --resume continues bit for bit.

The real Fashion-MNIST SwAV config, shrunk (batch 4, queue of 8 = two batches, so the queue is
full and in use from iteration 3; prototypes frozen for 2 iterations), runs through tools/train.py's
path as in tests/cli/test_exact_resume.py: A uninterrupted to N=6, B interrupted after K=3 and
resumed.  Under DDP the same comparison runs with 2 gloo processes through tools/dist_train.sh.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
import types

import pytest
import torch
from mmengine.config import Config
from mmpretrain.engine.hooks import SwAVHook

import mmssl_ext  # noqa: F401  (registers the hook, safe-load allow-list)
from mmssl_ext.engine.hooks import ResumableSwAVHook
from mmssl_ext.engine.hooks.rng_state import add_exact_resume_hooks
from mmssl_ext.engine.hooks.swav_queue import SWAV_QUEUE_KEY, split_saved_queues
from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from tests.helpers import free_port
from tests.cli.test_exact_resume import _differing, _logged, _model, _train
from mmssl_ext.registry import HOOKS
from tests.helpers import REPO

SWAV_CFG = osp.join(REPO, 'configs/swav/swav_r18-w32_1xb64-mcrop-3000it_fmnist.py')
N, K = 6, 3


def _opts(tree, batch_size=4, max_iters=N, interval=K):
    return [f'train_dataloader.dataset.data_root={tree}',
            f'train_dataloader.batch_size={batch_size}', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', f'train_cfg.max_iters={max_iters}',
            f'default_hooks.checkpoint.interval={interval}', 'default_hooks.logger.interval=1',
            'log_processor.window_size=1', f'custom_hooks.0.batch_size={batch_size}',
            'custom_hooks.0.queue_length=8', 'custom_hooks.0.frozen_layers_cfg.prototypes=2']


@HOOKS.register_module(force=True)
class _PlainSwAVHook(SwAVHook):
    """mmpretrain's SwAVHook under a name that tools/train.py's merge step does not swap."""


def _queue(runner):
    return _model(runner).head.loss_module.queue


def test_config_and_train_py_use_the_resumable_hook():
    cfg = Config.fromfile(SWAV_CFG)
    assert cfg.custom_hooks[0]['type'] == 'ResumableSwAVHook'
    # tools/train.py's merge step swaps mmpretrain's hook in any other SwAV config
    other = Config(dict(custom_hooks=[dict(type='SwAVHook', batch_size=32, queue_length=3840),
                                      dict(type='mmpretrain.SwAVHook', batch_size=8)]))
    add_exact_resume_hooks(other)
    assert other.custom_hooks == [
        dict(type='ResumableSwAVHook', batch_size=32, queue_length=3840),
        dict(type='ResumableSwAVHook', batch_size=8), dict(type='RNGStateHook')]


def test_swav_exact_resume_with_the_queue_from_the_checkpoint(tiny_tree, tmp_path):
    opts = _opts(tiny_tree)
    full = _train(SWAV_CFG, str(tmp_path / 'full'), opts)
    ref = _logged(full)
    assert sorted(ref) == list(range(1, N + 1))
    assert any(type(h) is ResumableSwAVHook for h in full.hooks)
    assert _model(full).head.loss_module.use_queue  # the queue was in use

    work = str(tmp_path / 'interrupted')
    first = _train(SWAV_CFG, work, opts, interrupt_at=K)
    assert first.iter == K
    ckpt = load_checkpoint_safe(osp.join(work, f'iter_{K}.pth'))  # weights_only + allow-list
    saved = ckpt[SWAV_QUEUE_KEY]
    assert saved['world_size'] == 1 and len(saved['queues']) == 1
    assert saved['queues'][0].shape == (2, 8, 128)  # 2 crops for assignment, 8 features, 128-d
    assert saved['queues'][0][:, -1].abs().sum(-1).min() > 0  # full: the last row is filled
    torch.testing.assert_close(saved['queues'][0], _queue(first).cpu(), rtol=0, atol=0)

    # SwAVHook's queue file is stale or missing at a real resume (a killed run writes none; a
    # resume from an older checkpoint finds a newer one): give it the full run's final queue,
    # the checkpoint must win
    ckpt_copy = shutil.copy(osp.join(work, f'iter_{K}.pth'), str(tmp_path / 'k.pth'))
    shutil.copy(osp.join(full.work_dir, 'queue.pth'), osp.join(work, 'queue.pth'))
    resumed = _train(SWAV_CFG, work, opts, resume='auto')
    got = _logged(resumed)
    for i in range(K + 1, N + 1):
        assert got[i] == ref[i], f'iteration {i}: resumed {got[i]} != uninterrupted {ref[i]}'
    assert not _differing(_model(full).state_dict(), _model(resumed).state_dict())
    assert torch.equal(_queue(full), _queue(resumed))

    # control: mmpretrain's SwAVHook resumes the same checkpoint (no queue file): the losses differ
    control = _train(SWAV_CFG, str(tmp_path / 'control'), opts, resume=ckpt_copy,
                     extra={'custom_hooks.0.type': '_PlainSwAVHook'})
    assert any(type(h) is _PlainSwAVHook for h in control.hooks)
    other = _logged(control)
    assert any(other[i]['loss'] != ref[i]['loss'] for i in range(K + 1, N + 1))


def test_swav_ddp_resume_gives_each_rank_its_own_queue(tiny_tree, tmp_path):
    """2 gloo processes, batch 2 each: the checkpoint holds both ranks' (different) queues, and a
    run resumed from iteration 2 ends with the uninterrupted run's weights and queues.  (The
    recipe's SyncBN neck runs as CPUSyncBatchNorm: torch's SyncBatchNorm needs a GPU.)"""
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))

    def dist_train(work, *extra):
        cmd = ['bash', osp.join(REPO, 'tools/dist_train.sh'), SWAV_CFG, '2', '--work-dir', work,
               *extra, '--cfg-options', *_opts(tiny_tree, batch_size=2, max_iters=4, interval=2)]
        for _ in range(2):  # one retry: a rank sometimes aborts in C++ at its first step (1 in 5)
            out = subprocess.run(cmd, cwd=REPO, env=dict(env, PORT=str(free_port())),
                                 capture_output=True, text=True, timeout=600)
            if out.returncode == 0 or \
                    'terminate called without an active exception' not in out.stderr:
                break
        assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]

    full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    dist_train(full)
    at2 = load_checkpoint_safe(osp.join(full, 'iter_2.pth'))[SWAV_QUEUE_KEY]
    assert at2['world_size'] == 2 and [tuple(q.shape) for q in at2['queues']] == [(2, 4, 128)] * 2
    assert not torch.equal(at2['queues'][0], at2['queues'][1])  # each rank its own features
    dist_train(resumed, '--resume', osp.join(full, 'iter_2.pth'))
    a = load_checkpoint_safe(osp.join(full, 'iter_4.pth'))
    b = load_checkpoint_safe(osp.join(resumed, 'iter_4.pth'))
    assert not _differing(a['state_dict'], b['state_dict'])
    for rank in range(2):  # swapped queues would change both the weights and these
        assert torch.equal(a[SWAV_QUEUE_KEY]['queues'][rank], b[SWAV_QUEUE_KEY]['queues'][rank])


# ------------------------------------------------------------------------------ the pieces


def test_split_saved_queues_across_process_counts():
    q = [torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3) + 100 * r for r in range(2)]
    saved = dict(world_size=2, queues=q)
    assert torch.equal(split_saved_queues(saved, 2, 1), q[1])
    both = split_saved_queues(saved, 1, 0)  # 2 -> 1: one queue of all 8 features
    assert both.shape == (2, 8, 3)
    assert torch.equal(both[:, :4], q[0]) and torch.equal(both[:, 4:], q[1])
    four = [split_saved_queues(saved, 4, r) for r in range(4)]  # 2 -> 4: 2 features each
    assert torch.equal(torch.cat(four, dim=1), both)
    with pytest.raises(ValueError, match=r"swav_queue.*8 features in all.*3 processes"):
        split_saved_queues(saved, 3, 0)
    with pytest.raises(ValueError, match=r"holds 1 queues for 2 processes"):
        split_saved_queues(dict(world_size=2, queues=q[:1]), 2, 0)


def _fake_runner(iteration):
    loss = types.SimpleNamespace(queue=None, use_queue=False)
    model = types.SimpleNamespace(head=types.SimpleNamespace(loss_module=loss))
    return types.SimpleNamespace(iter=iteration, model=model)


def test_resume_restores_and_checks_the_shape_load_from_does_not():
    hook = ResumableSwAVHook(batch_size=4, queue_length=8, feat_dim=3)
    saved = {SWAV_QUEUE_KEY: dict(world_size=1, queues=[torch.ones(2, 8, 3)]),
             'meta': dict(iter=5)}
    fresh = _fake_runner(0)  # load_from: the queue stays as the hook builds it
    hook.after_load_checkpoint(fresh, saved)
    hook.before_train(fresh)
    assert hook.queue is None and fresh.model.head.loss_module.queue is None
    runner = _fake_runner(5)
    hook.after_load_checkpoint(runner, saved)
    hook.before_train(runner)
    assert torch.equal(runner.model.head.loss_module.queue, torch.ones(2, 8, 3))
    assert hook.queue is runner.model.head.loss_module.queue

    other = ResumableSwAVHook(batch_size=4, queue_length=16, feat_dim=3)
    other.after_load_checkpoint(runner, saved)
    with pytest.raises(ValueError, match=r"shape \(2, 8, 3\).*expects \(2, 16, 3\).*"
                                         r"queue_length=16"):
        other.before_train(runner)
