"""OnlineLinearProbeHook: accuracy on separable toy features, the same numbers on 1 and 2 gloo
ranks, logging in a run and resume of its state."""
import json
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.visualization import Visualizer
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

from mmssl_ext.cli import train as train_api
from mmssl_ext.engine.hooks import OnlineLinearProbeHook
from mmssl_ext.engine.hooks.rng_state import get_rng_state
from mmssl_ext.registry import DATASETS
from mmssl_ext.utils.checkpoint import load_checkpoint_safe
from tests.helpers import free_port, gloo_group


@DATASETS.register_module(force=True)
class _ToyVectors(Dataset):
    """3 classes of 3x4x4 'images': a class mean (norm ~7) plus N(0, 0.3^2) noise per split
    (``random_labels``: labels that ignore the class, a chance-level control)."""

    def __init__(self, n=30, split='train', random_labels=False):
        g = np.random.RandomState(0)
        means = g.randn(3, 48) * 1.0
        rng = np.random.RandomState(1 if split == 'train' else 2)
        self.y = np.arange(n) % 3
        self.x = means[self.y] + 0.3 * rng.randn(n, 48)
        if random_labels:
            self.y = rng.randint(0, 3, size=n)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return dict(inputs=torch.from_numpy(self.x[i]).float().view(3, 4, 4),
                    data_samples=DataSample().set_gt_label(int(self.y[i])))


class _Flatten(BaseModel):
    def __init__(self):
        super().__init__(data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor'))
        self.backbone = nn.Flatten()

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.backbone(inputs)


def _loader(split, n, random_labels=False):
    return dict(batch_size=4, num_workers=0, persistent_workers=False,
                sampler=dict(type='DefaultSampler', shuffle=False),
                dataset=dict(type='mmpretrain._ToyVectors', n=n, split=split,
                             random_labels=random_labels))


def _fake_runner(name):
    return SimpleNamespace(model=_Flatten(), seed=0, epoch=0, iter=9,
                           message_hub=MessageHub.get_instance(name),
                           visualizer=Visualizer.get_instance(name),
                           logger=MMLogger.get_instance(name))


def _evaluate(name, random_labels=False):
    hook = OnlineLinearProbeHook(_loader('train', 30, random_labels),
                                 _loader('val', 27, random_labels), by_epoch=False,
                                 max_iter=25)
    runner = _fake_runner(name)
    return hook, runner, hook.evaluate(runner)


def test_separable_features_are_classified_and_random_labels_are_not():
    state = get_rng_state()
    hook, runner, res = _evaluate('probe_separable')
    assert res['top1'] == 100.0 and res['best_top1'] == 100.0 and hook.best_step == 10
    assert runner.message_hub.get_scalar('linear_probe/top1').current() == 100.0
    assert torch.equal(state['torch'], get_rng_state()['torch'])  # neutral to the run
    _, _, control = _evaluate('probe_random', random_labels=True)
    assert control['top1'] < 70.0


def test_state_in_the_checkpoint():
    hook, runner, _ = _evaluate('probe_ckpt')
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    assert ckpt['online_linear_probe'] == dict(best_top1=100.0, best_step=10)
    fresh = OnlineLinearProbeHook(_loader('train', 30), _loader('val', 27))
    fresh.after_load_checkpoint(runner, ckpt)
    assert (fresh.best_top1, fresh.best_step) == (100.0, 10)
    with pytest.raises(ValueError, match='max_iter >= 1'):
        OnlineLinearProbeHook(_loader('train', 30), _loader('val', 27), max_iter=0)


def _ddp_worker(rank, port, out):
    with gloo_group(rank, port, 2):
        for random_labels in (False, True):
            _, _, res = _evaluate(f'probe_ddp_{rank}_{random_labels}', random_labels)
            torch.save(res, f'{out}.{random_labels}.{rank}')


def test_two_gloo_ranks_give_the_single_process_result(tmp_path):
    """30 / 27 samples over 2 ranks (27: a padded shard): every rank gets the single-process
    top-1, for separable features and for the random-label control, whose top-1 depends on
    every feature.  (Forked, not spawned: the workers need no fresh imports.)"""
    out = str(tmp_path / 'res')
    mp.start_processes(_ddp_worker, args=(free_port(), out), nprocs=2, start_method='fork')
    for random_labels in (False, True):
        _, _, single = _evaluate(f'probe_single_{random_labels}', random_labels)
        for rank in range(2):
            assert torch.load(f'{out}.{random_labels}.{rank}') == single


def test_in_a_run_it_logs_and_resumes(tiny_tree, tmp_path):
    """A toy run with the probe every 2 iterations on the tiny image tree; interrupted after
    iteration 2 and resumed: the best top-1 comes back from the checkpoint and the values at
    iteration 4 equal the uninterrupted run's."""
    import tests.cli.test_exact_resume  # noqa: F401  registers _InterruptAfterHook
    from tests.engine.test_collapse_monitor import _cfg_dict
    loader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  dataset=dict(type='CustomDataset', data_root=str(tiny_tree),
                               ann_file='meta/{}.txt', data_prefix='{}',
                               pipeline=[dict(type='LoadImageFromFile'),
                                         dict(type='Resize', scale=(8, 8)),
                                         dict(type='PackInputs')]))

    def split(name):
        d = json.loads(json.dumps(loader))
        d['dataset']['ann_file'] = f'meta/{name}.txt'
        d['dataset']['data_prefix'] = name
        return d

    probe = dict(type='OnlineLinearProbeHook', interval=2, by_epoch=False, max_iter=25,
                 train_dataloader=split('train'), val_dataloader=split('val'))

    def run(work, name, interrupt=False, resume=False):
        cfg = Config(dict(_cfg_dict(str(tiny_tree), False, max_iters=4), custom_hooks=[probe]))
        path = str(tmp_path / f'{name}.py')
        cfg.dump(path)
        resume_args = ['--resume'] if resume else []
        args = train_api.parse_args([path, '--work-dir', work] + resume_args)
        cfg = train_api.merge_args(Config.fromfile(path), args)
        if interrupt:
            cfg.custom_hooks = list(cfg.custom_hooks) + [
                dict(type='_InterruptAfterHook', iters=2)]
        cfg.experiment_name = f'probe_{name}'
        runner = train_api.build_runner(cfg)
        runner.train()
        return runner, [h for h in runner.hooks if isinstance(h, OnlineLinearProbeHook)][0]

    full, hook = run(str(tmp_path / 'full'), 'full')
    with open(osp.join(full.log_dir, 'vis_data', 'scalars.json')) as f:
        rows = {r['step']: r for r in map(json.loads, f) if 'linear_probe/top1' in r}
    assert sorted(rows) == [2, 4]
    assert all(0 <= r['linear_probe/top1'] <= 100 for r in rows.values())
    work = str(tmp_path / 'cut')
    _, cut_hook = run(work, 'cut', interrupt=True)
    saved = load_checkpoint_safe(osp.join(work, 'iter_2.pth'))['online_linear_probe']
    assert saved == dict(best_top1=cut_hook.best_top1, best_step=2)
    _, resumed = run(work, 'resumed', resume=True)
    assert (resumed.best_top1, resumed.best_step) == (hook.best_top1, hook.best_step)
    assert resumed.last_results == hook.last_results
