"""NaNLossCheckHook: a NaN / Inf loss stops the run at its iteration, before anything is saved."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel

from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.hooks import NaNLossCheckHook, NonFiniteLossError
from mmssl_ext.engine.hooks.nan_check import non_finite_terms
from mmssl_ext.registry import MODELS
from tests.helpers import free_port, gloo_group


@MODELS.register_module(force=True)
class _NaNAtIterModel(BaseModel):
    """Two loss terms; ``term`` becomes ``value`` (NaN / Inf) at the ``bad_at``-th step."""

    def __init__(self, bad_at=4, term='loss_nce', value='nan', data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.w = nn.Parameter(torch.ones(1))
        self.bad_at, self.term, self.value = bad_at, term, float(value)
        self.steps = 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = inputs.float().mean() / 255 * self.w
        if mode != 'loss':
            return x
        self.steps += 1
        losses = dict(loss_nce=(x - 1) ** 2, loss_reg=0.1 * self.w.abs().sum())
        if self.steps == self.bad_at:
            losses[self.term] = losses[self.term] * self.value
        return losses


def _write_cfg(tmp_path, tree, **model):
    cfg = Config(dict(
        default_scope='mmpretrain',
        model=dict(type='_NaNAtIterModel', **model),
        train_dataloader=dict(
            batch_size=4, num_workers=0, persistent_workers=False,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            dataset=dict(type='CustomDataset', data_root=tree, ann_file='meta/train.txt',
                         data_prefix='train',
                         pipeline=[dict(type='LoadImageFromFile'),
                                   dict(type='Resize', scale=(8, 8)),
                                   dict(type='PackInputs')])),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=8),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=False)))
    path = str(tmp_path / 'nan_cfg.py')
    cfg.dump(path)
    return path


@pytest.mark.parametrize('term,value', [('loss_nce', 'nan'), ('loss_reg', 'inf')])
def test_train_tool_stops_at_the_nan_iteration_and_keeps_the_last_checkpoint(
        tiny_tree, tmp_path, term, value):
    """The loss turns non-finite at iteration 4, a checkpoint iteration: the tool's automatic hook
    stops the run there; iter_2.pth stays loadable and finite, iter_4.pth is never written."""
    work = str(tmp_path / 'work')
    cfg_path = _write_cfg(tmp_path, tiny_tree, bad_at=4, term=term, value=value)
    with pytest.raises(NonFiniteLossError) as e:
        train_api.main([cfg_path, '--work-dir', work])
    msg = str(e.value)
    shown = 'nan' if value == 'nan' else 'inf'
    assert f'{term} = {shown}' in msg and 'at iteration 4 ' in msg
    other = {'loss_nce', 'loss_reg'} - {term}
    assert f'{other.pop()} =' not in msg  # only the bad term(s) and the total are named
    assert osp.join(work, 'iter_2.pth') in msg  # the last good checkpoint is named
    ckpt = torch.load(osp.join(work, 'iter_2.pth'), map_location='cpu')
    assert ckpt['meta']['iter'] == 2
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())
    assert not osp.exists(osp.join(work, 'iter_4.pth'))


def test_config_can_tune_or_switch_off_the_hook(tiny_tree, tmp_path):
    cfg_path = _write_cfg(tmp_path, tiny_tree, bad_at=3)
    args = train_api.parse_args([cfg_path, '--work-dir', str(tmp_path / 'w')])
    cfg = train_api.merge_args(Config.fromfile(cfg_path), args)
    assert [h['type'] for h in cfg.custom_hooks].count('NaNLossCheckHook') == 1
    cfg = Config.fromfile(cfg_path)
    cfg.custom_hooks = [dict(type='NaNLossCheckHook', keys=[])]
    cfg = train_api.merge_args(cfg, args)
    assert [h for h in cfg.custom_hooks if h['type'] == 'NaNLossCheckHook'] == \
        [dict(type='NaNLossCheckHook', keys=[])]
    runner = train_api.build_runner(cfg)
    runner.train()  # switched off: the NaN at iteration 3 does not stop the run
    assert runner.iter == 8 and osp.isfile(osp.join(str(tmp_path / 'w'), 'iter_8.pth'))


def test_non_finite_terms_and_hook_unit():
    out = dict(loss=torch.tensor(float('nan')), loss_a=torch.tensor(1.0),
               loss_b=torch.tensor([1.0, float('-inf')]), acc=3.0, note='text')
    assert non_finite_terms(out) == ['loss = nan', 'loss_b = -inf']
    assert non_finite_terms(out, keys=['loss_a']) == []
    runner = SimpleNamespace(iter=16, epoch=0, train_loop=SimpleNamespace(max_iters=100),
                             message_hub=SimpleNamespace(get_info=lambda k: None))
    with pytest.raises(NonFiniteLossError, match=r'at iteration 17 .*loss = nan, loss_b = -inf'
                       r'.*no checkpoint had been written yet'):
        NaNLossCheckHook().after_train_iter(runner, 16, outputs=out)
    NaNLossCheckHook(keys=['loss_a']).after_train_iter(runner, 16, outputs=out)
    NaNLossCheckHook().after_train_iter(runner, 16, outputs=dict(loss=torch.tensor(2.0)))


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    with gloo_group(rank, port, 2):
        runner = SimpleNamespace(iter=6, epoch=0, train_loop=SimpleNamespace(),
                                 message_hub=SimpleNamespace(get_info=lambda k: None))
        hook = NaNLossCheckHook()
        verdicts = []
        for step in range(2):  # step 0: all finite; step 1: NaN on rank 1 only
            bad = step == 1 and rank == 1
            out = dict(loss=torch.tensor(float('nan') if bad else 1.0))
            try:
                hook.after_train_iter(runner, step, outputs=out)
                verdicts.append('ok')
            except NonFiniteLossError as e:
                verdicts.append(str(e))
        with open(osp.join(out_dir, f'rank{rank}.txt'), 'w') as f:
            f.write('\n'.join(verdicts))


def test_every_ddp_rank_stops_when_one_rank_sees_nan(tmp_path):
    """2 gloo processes: a NaN on rank 1 alone stops rank 0 at the same iteration too (otherwise
    rank 0 would wait forever for rank 1 in the next collective)."""
    import torch.multiprocessing as mp
    port = free_port()
    # fork: the workers inherit the imported modules (spawn would re-import mmssl_ext: ~7 s)
    mp.start_processes(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True,
                       start_method='fork')
    r0 = (tmp_path / 'rank0.txt').read_text().split('\n')
    r1 = (tmp_path / 'rank1.txt').read_text().split('\n')
    assert r0[0] == r1[0] == 'ok'
    assert 'at iteration 7 ' in r1[1] and 'loss = nan' in r1[1]
    assert 'at iteration 7 ' in r0[1] and '(on another rank)' in r0[1]
