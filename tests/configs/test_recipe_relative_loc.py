"""Relative patch location's ImageNet recipe: the patch geometry pinned to the official code
(cdoersch/deepcontext train.py), the ResNet-50 schedule to mmselfsup's
configs/selfsup/relative_loc/relative-loc_resnet50_8xb64-steplr-70e_in1k.py (open-mmlab/mmselfsup
1.x; 0.x the same values).  The pair sampling, colour handling and head are our documented
choices (configs/relative_loc/README.md)."""
import copy

import pytest
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from tests.configs import recipe as R

CFG = 'relative_loc/relative-loc_r50_8xb32-70e_in1k.py'


def test_batch_optimizer_schedule():
    cfg = R.load(CFG)
    assert R.name_gpus_batch(CFG) == (8, 32) and R.total_batch(cfg, 8) == 256
    # mmselfsup relative-loc_resnet50_8xb64-steplr-70e_in1k.py: SGD lr=0.2 for 8 x 64 pairs,
    # momentum 0.9, weight_decay 1e-4; scaled linearly to 256 pairs
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=0.2 * 256 / 512, momentum=0.9,
                                           weight_decay=1e-4))
    assert not R.optimizer(cfg).get('nesterov', False)
    # ... paramwise_cfg custom_keys neck / head decay_mult=5.0 (our head holds both)
    assert R.plain(cfg.optim_wrapper.paramwise_cfg) == {'custom_keys': {'head':
                                                                        {'decay_mult': 5.0}}}
    # ... no norm / bias exclusion in the backbone
    assert set(R.effective_weight_decay(cfg).values()) == {1e-4}
    model = nn.ModuleDict(dict(backbone=nn.BatchNorm2d(2), head=nn.Linear(2, 2)))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    assert [decay[id(p)] for p in model.head.parameters()] == pytest.approx([5e-4, 5e-4])
    assert [decay[id(p)] for p in model.backbone.parameters()] == pytest.approx([1e-4, 1e-4])
    # ... LinearLR start_factor=0.1 over epochs 0-5 (per iteration), MultiStepLR [30, 50] x0.1,
    # max_epochs=70
    warmup, step = R.schedulers(cfg)
    R.assert_values(warmup, dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0,
                                 end=5, convert_to_iter_based=True))
    R.assert_values(step, dict(type='MultiStepLR', by_epoch=True, milestones=[30, 50],
                               gamma=0.1))
    R.assert_values(cfg.train_cfg, dict(type='EpochBasedTrainLoop', max_epochs=70))


def test_patch_geometry():
    cfg = R.load(CFG)
    patches = R.find_transform(cfg.train_dataloader.dataset.pipeline, 'RelativeLocationPatches')
    # train.py: patch_sz=(96,96), gap = 48, noise = 7 (random.randint(-noisehalf, noisehalf))
    R.assert_values(patches, dict(patch_size=96, gap=48, jitter=7))
    # the lattice of three patches and two gaps, each patch shifted by up to 7 px
    assert R.build_transform(patches).crop_size == 398
    # train.py pos2lbl: 8 neighbours
    assert cfg.model.head.num_classes == 8 and cfg.model.head.num_inputs == 2
