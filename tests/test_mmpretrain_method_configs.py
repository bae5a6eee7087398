"""The Fashion-MNIST configs of mmpretrain's own methods (SimCLR, MoCo v3, BYOL, SimSiam, SwAV,
Barlow Twins): each runs 2 iterations through tools/train.py's path on the tiny tree, builds
mmpretrain's class (not a rewrite), and differs from mmpretrain's ImageNet recipe only in data,
backbone size and schedule."""
import os.path as osp

import mmpretrain
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmpretrain.models import selfsup

import mmssl_ext  # noqa: F401
from mmssl_ext.cli import train as train_api
from mmssl_ext.registry import HOOKS
from mmssl_ext.utils.config import load_config
from tests.helpers import REPO

MMPRETRAIN_CONFIGS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs')

# (our config, mmpretrain's recipe it inherits, mmpretrain's class, extra test-only options)
CASES = {
    'simclr': ('simclr/simclr_r18-w32_1xb64-3000it_fmnist.py',
               'simclr/simclr_resnet50_8xb32-coslr-200e_in1k.py', selfsup.SimCLR, []),
    'mocov3': ('mocov3/mocov3_r18-w32_1xb64-3000it_fmnist.py',
               'mocov3/mocov3_resnet50_8xb512-amp-coslr-100e_in1k.py', selfsup.MoCoV3, []),
    'byol': ('byol/byol_r18-w32_1xb64-3000it_fmnist.py',
             'byol/byol_resnet50_16xb256-coslr-200e_in1k.py', selfsup.BYOL, []),
    'simsiam': ('simsiam/simsiam_r18-w32_1xb64-3000it_fmnist.py',
                'simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py', selfsup.SimSiam, []),
    'swav': ('swav/swav_r18-w32_1xb64-mcrop-3000it_fmnist.py',
             'swav/swav_resnet50_8xb32-mcrop-coslr-200e_in1k-224px-96px.py', selfsup.SwAV, []),
    # the recipe's 8192-d projector (134M parameters) is shrunk for the test only
    'barlowtwins': ('barlowtwins/barlowtwins_r18-w32_1xb64-3000it_fmnist.py',
                    'barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py',
                    selfsup.BarlowTwins,
                    ['model.neck.hid_channels=64', 'model.neck.out_channels=64',
                     'model.head.in_channels=64']),
}


def _strip_scope(obj):
    if isinstance(obj, dict):
        return {k: _strip_scope(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_strip_scope(v) for v in obj)
    return obj


def _views(cfg):
    multiview = [t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'MultiView']
    assert len(multiview) == 1
    return multiview[0]['transforms']


@pytest.mark.parametrize('name', sorted(CASES))
def test_config_differs_from_the_recipe_only_in_data_backbone_and_schedule(name):
    ours_path, recipe_path, _, _ = CASES[name]
    ours = Config.fromfile(osp.join(REPO, 'configs', ours_path))
    recipe = Config.fromfile(osp.join(MMPRETRAIN_CONFIGS, recipe_path))
    assert ours.custom_imports == dict(imports=['mmssl_ext'], allow_failed_imports=False)
    assert 'knn_eval' in ours  # our kNN evaluation data (tools/knn_eval.py)
    # model: only the backbone size and the neck's input width change
    model, ref = _strip_scope(ours.to_dict()['model']), _strip_scope(recipe.to_dict()['model'])
    assert model['backbone'] == dict(ref['backbone'], depth=18, stem_channels=32,
                                     base_channels=32, norm_cfg=dict(type='BN'))
    assert model['neck'] == dict(ref['neck'], in_channels=256)
    rest = lambda m: {k: v for k, v in m.items() if k not in ('backbone', 'neck')}  # noqa: E731
    assert rest(model) == rest(ref)
    # data: Fashion-MNIST subset, 32 px global crops (16 px local crops), no blur; the views keep
    # the recipe's other transforms in the recipe's order
    ds = ours.train_dataloader.dataset
    assert ds.indices == 10000 and ds.data_root == ours.fmnist_data_root
    assert ours.train_dataloader.batch_size == 64
    for view, ref_view in zip(_views(ours), _views(recipe)):
        assert [t['type'] for t in view] == [t['type'] for t in ref_view
                                             if t['type'] != 'GaussianBlur']
        crops = [t['scale'] for t in view if t['type'] == 'RandomResizedCrop']
        assert crops in ([32], [16])
    # schedule: the shared Fashion-MNIST budget, the recipe's optimizer type
    assert ours.train_cfg == dict(type='IterBasedTrainLoop', max_iters=3000)
    assert [s['type'] for s in ours.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
    assert ours.optim_wrapper.type == 'OptimWrapper'
    assert ours.optim_wrapper.optimizer.type == recipe.optim_wrapper.optimizer.type
    assert ours.randomness.seed == 0


@pytest.mark.parametrize('name', sorted(CASES))
def test_trains_two_iterations_via_tools_train(name, tiny_tree, tmp_path):
    ours_path, _, cls, extra = CASES[name]
    work = str(tmp_path / name)
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=1000',
            'default_hooks.checkpoint.save_last=False', 'default_hooks.logger.interval=1',
            *extra]
    runner = train_api.main([osp.join(REPO, 'configs', ours_path), '--work-dir', work,
                             '--cfg-options', *opts])
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    assert type(model) is cls, f'{type(model)} is not mmpretrain\'s {cls}'
    assert type(model).__module__.startswith('mmpretrain.models.selfsup.')
    assert model.backbone.layer4[-1].conv2.out_channels == 256  # half-width ResNet-18
    assert runner.iter == 2
    losses = np.asarray(runner.message_hub.get_scalar('train/loss').data[0])
    assert len(losses) == 2 and np.isfinite(losses).all(), losses


@HOOKS.register_module(force=True)
class _PredictorLrProbe(Hook):
    """Records, just before each step, the lr of the fixed-lr (predictor) and the other groups."""
    priority = 'LOW'  # after SimSiamHook (HIGH)

    def __init__(self):
        self.fixed, self.scheduled = [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        groups = runner.optim_wrapper.optimizer.param_groups
        self.fixed.append({g['lr'] for g in groups if g.get('fix_lr')})
        self.scheduled.append({g['lr'] for g in groups if not g.get('fix_lr')})


def _simsiam_lrs(tiny_tree, work, adjust_by_epoch):
    ours_path = osp.join(REPO, 'configs', CASES['simsiam'][0])
    opts = [f'train_dataloader.dataset.data_root={tiny_tree}', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'train_cfg.max_iters=4', 'default_hooks.checkpoint.interval=1000',
            'default_hooks.checkpoint.save_last=False']
    args = train_api.parse_args([ours_path, '--work-dir', work, '--cfg-options', *opts])
    cfg = train_api.merge_args(load_config(args.config), args)
    for h in cfg.custom_hooks:
        if h['type'] == 'SimSiamHook':
            h['adjust_by_epoch'] = adjust_by_epoch
    cfg.custom_hooks.append(dict(type='_PredictorLrProbe'))
    runner = train_api.build_runner(cfg)
    runner.train()
    return [h for h in runner.hooks if isinstance(h, _PredictorLrProbe)][0]


def test_simsiam_predictor_lr_stays_fixed_under_the_iteration_schedule(tiny_tree, tmp_path):
    """The predictor trains at the fixed lr at every step while the rest warms up; with the
    recipe's per-epoch reset (adjust_by_epoch=True) the predictor's lr would follow the
    iteration scheduler from the second step on (one "epoch" = the whole run)."""
    lr = 0.05 * 64 / 256
    probe = _simsiam_lrs(tiny_tree, str(tmp_path / 'ours'), adjust_by_epoch=False)
    assert probe.fixed == [{lr}] * 4
    assert all(max(s) < lr for s in probe.scheduled)  # warm-up: the others start at lr / 10
    assert len({min(s) for s in probe.scheduled}) == 4  # ... and move every step
    control = _simsiam_lrs(tiny_tree, str(tmp_path / 'control'), adjust_by_epoch=True)
    assert control.fixed[0] == {lr} and any(f != {lr} for f in control.fixed[1:])
