"""tools/train.py end to end: a tiny real MoCo v2 run writes a checkpoint; --resume continues it."""
import copy
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from mmssl_ext.cli import train as train_api
from mmssl_ext.registry import HOOKS
from tests.helpers import MOCO_FMNIST_CFG, tiny_moco_options


@HOOKS.register_module(force=True)
class _ResumeProbeHook(Hook):
    """Records what the runner holds right after load_or_resume (before the first new step)."""
    seen = {}

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        _ResumeProbeHook.seen = dict(
            iter=runner.iter,
            optimizer=copy.deepcopy(runner.optim_wrapper.optimizer.state_dict()),
            queue=model.queue.clone(),
            queue_ptr=int(model.queue_ptr))


def _run(argv, probe=False):
    args = train_api.parse_args(argv)
    cfg = train_api.merge_args(Config.fromfile(args.config), args)
    if probe:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='_ResumeProbeHook')]
    runner = train_api.build_runner(cfg)
    runner.train()
    return runner


def test_train_checkpoint_then_resume(tiny_tree, tmp_path):
    work = str(tmp_path / 'work')
    opts = tiny_moco_options(tiny_tree, work, max_iters=2, ckpt_interval=2)
    runner = _run([MOCO_FMNIST_CFG, '--work-dir', work, '--cfg-options', *opts])
    assert runner.iter == 2
    ckpt_path = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt_path)
    # the default torch.load (weights_only=True on torch >= 2.6) reads it: the allow-list works
    ckpt = torch.load(ckpt_path, map_location='cpu')
    assert ckpt['meta']['iter'] == 2
    assert 'queue' in ckpt['state_dict'] and ckpt['optimizer']['state']

    # resume from the work dir (auto: latest checkpoint) and train 2 more iterations
    opts4 = tiny_moco_options(tiny_tree, work, max_iters=4, ckpt_interval=2)
    runner = _run([MOCO_FMNIST_CFG, '--work-dir', work, '--resume', '--cfg-options', *opts4],
                  probe=True)
    seen = _ResumeProbeHook.seen
    assert seen['iter'] == 2, 'the iteration count did not carry over'
    saved_state = ckpt['optimizer']['state']
    assert set(seen['optimizer']['state']) == set(saved_state)
    for pid, st in saved_state.items():
        torch.testing.assert_close(seen['optimizer']['state'][pid]['momentum_buffer'],
                                   st['momentum_buffer'])
    assert [g['lr'] for g in seen['optimizer']['param_groups']] == \
        [g['lr'] for g in ckpt['optimizer']['param_groups']]
    # MoCo's queue (state outside the weights) came back too
    torch.testing.assert_close(seen['queue'], ckpt['state_dict']['queue'])
    assert seen['queue_ptr'] == int(ckpt['state_dict']['queue_ptr'])
    assert runner.iter == 4
    assert torch.load(osp.join(work, 'iter_4.pth'), map_location='cpu')['meta']['iter'] == 4


def test_resume_from_explicit_path_and_cli_flags(tiny_tree, tmp_path):
    work = str(tmp_path / 'w2')
    opts = tiny_moco_options(tiny_tree, work, max_iters=2, ckpt_interval=2)
    args = train_api.parse_args([MOCO_FMNIST_CFG, '--work-dir', work, '--resume',
                                 osp.join(work, 'iter_2.pth'), '--no-pin-memory',
                                 '--no-persistent-workers', '--auto-scale-lr',
                                 '--cfg-options', *opts])
    cfg = train_api.merge_args(Config.fromfile(args.config), args)
    assert cfg.resume is True and cfg.load_from.endswith('iter_2.pth')
    assert cfg.train_dataloader.pin_memory is False
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.auto_scale_lr.enable is True
    assert cfg.work_dir == work
    assert cfg.train_cfg.max_iters == 2


def test_num_workers_zero_from_the_command_line_alone(tiny_tree, tmp_path):
    """`--cfg-options train_dataloader.num_workers=0` alone: persistent_workers (True in the
    config) is switched off after the overrides, so torch does not refuse the loader."""
    args = train_api.parse_args([MOCO_FMNIST_CFG, '--cfg-options',
                                 'train_dataloader.num_workers=0'])
    cfg = train_api.merge_args(Config.fromfile(args.config), args)
    assert cfg.train_dataloader.num_workers == 0
    assert cfg.train_dataloader.persistent_workers is False
    args = train_api.parse_args([MOCO_FMNIST_CFG])
    cfg = train_api.merge_args(Config.fromfile(args.config), args)
    assert cfg.train_dataloader.persistent_workers is True  # untouched with workers
