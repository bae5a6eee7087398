"""RotNet's ImageNet recipe pinned to the official code (gidariss/FeatureLearningRotNet:
config/ImageNet_RotNet_AlexNet.py, algorithms/Algorithm.py, dataloader.py)."""
import pytest

from tests.configs import recipe as R

CFG = 'rotation/rotation_r50_8xb24-50e_in1k.py'
OLD_NAME = 'rotation/rotation_r50_8xb32-30e_in1k.py'  # deprecated alias of CFG

# config/ImageNet_RotNet_AlexNet.py: net_optim_params['LUT_lr'], config['max_num_epochs']
LUT_LR = [(15, 0.01), (30, 0.001), (45, 0.0001), (50, 0.00001)]
MAX_EPOCHS = 50


def _official_lr(epoch):
    """Algorithm.adjust_learning_rates, called at the start of every epoch (the first too)."""
    return next((lr for (max_epoch, lr) in LUT_LR if max_epoch > epoch), LUT_LR[-1][1])


def test_batch_optimizer():
    cfg = R.load(CFG)
    # ImageNet_RotNet_AlexNet.py: batch_size = 192 images (x4 rotations)
    assert R.name_gpus_batch(CFG) == (8, 24) and R.total_batch(cfg, 8) == 192
    # ... net_optim_params: sgd, momentum 0.9, weight_decay 5e-4, nesterov True; the lr in
    # force from the first epoch is the LUT's, 0.01 (its nominal 'lr': 0.1 is overwritten)
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=_official_lr(0), momentum=0.9,
                                           weight_decay=5e-4, nesterov=True))
    assert _official_lr(0) == 0.01
    # Algorithm.init_optimizer: torch.optim.SGD over all parameters, one weight decay
    assert set(R.effective_weight_decay(cfg).values()) == {5e-4}


def test_schedule_is_the_lut():
    cfg = R.load(CFG)
    (sched, ) = R.schedulers(cfg)
    R.assert_values(sched, dict(type='MultiStepLR', by_epoch=True, milestones=[15, 30, 45],
                                gamma=0.1))
    R.assert_values(cfg.train_cfg, dict(type='EpochBasedTrainLoop', max_epochs=MAX_EPOCHS))
    base = R.optimizer(cfg)['lr']
    ours = [base * sched['gamma'] ** sum(m <= e for m in sched['milestones'])
            for e in range(MAX_EPOCHS)]
    official = [_official_lr(e) for e in range(MAX_EPOCHS)]
    assert ours == pytest.approx(official, rel=1e-9)


def test_model_and_augmentation():
    cfg = R.load(CFG)
    # ImageNet_RotNet_AlexNet.py: net_opt num_classes 4; criterions CrossEntropyLoss
    assert cfg.model.head.num_classes == 4
    pipeline = cfg.train_dataloader.dataset.pipeline
    # dataloader.py GenericDataset (random_sized_crop=True): RandomSizedCrop(224) (scale
    # 0.08-1), RandomHorizontalFlip(); DataLoader: all four rotations (0, 90, 180, 270) of
    # every image in the same batch, labels 0..3
    assert R.transform_types(pipeline) == ['LoadImageFromFile', 'RandomResizedCrop',
                                           'RandomFlip', 'AllRotations90', 'PackInputs']
    crop = R.find_transform(pipeline, 'RandomResizedCrop')
    ratio_range = tuple(R.build_transform(crop).crop_ratio_range)
    assert crop['scale'] == 224 and ratio_range == (0.08, 1.0)
    assert R.find_transform(pipeline, 'RandomFlip')['prob'] == 0.5
    assert R.find_transform(pipeline, 'AllRotations90')['angles'] == [0, 90, 180, 270]


def test_deprecated_name_is_the_same_recipe():
    assert R.load(OLD_NAME).pretty_text == R.load(CFG).pretty_text
