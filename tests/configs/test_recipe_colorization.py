"""Colorization's ImageNet recipe: the target encoding and loss pinned to the reference code
(richzhang/colorization: resources/caffe_traininglayers.py,
models/colorization_train_val_v2.prototxt, train/solver.prototxt); the ResNet-50, its SGD
schedule and the crops are documented choices (configs/colorization/README.md), pinned so that
they change only on purpose."""
from tests.configs import recipe as R

CFG = 'colorization/colorization_r50_8xb32-coslr-200e_in1k.py'


def test_targets_and_loss():
    head = R.load(CFG).model.head
    # caffe_traininglayers.py NNEncLayer: NN = 10 nearest bins, sigma = 5; pts_in_hull.npy: the
    # ab grid of size 10 (the prior smoothed by a Gaussian of sigma 5, the paper's Sec. 2.2)
    R.assert_values(head.quantizer, dict(grid_size=10, num_neighbours=10, sigma=5.0,
                                         prior_sigma=5.0))
    # PriorBoostLayer: gamma = .5 (uniform mix), alpha = 1. (inverse); ClassRebalanceMultLayer
    assert head.rebalance is True and head.rebalance_lambda == 0.5
    # colorization_train_val_v2.prototxt data_ab_ss: the ab target subsampled with stride 4
    assert head.out_stride == 4
    # ... bw_conv1_1 sees data_l = L - 50 only (here normalised (L - 50) / 50: a choice)
    pre = R.load(CFG).model.data_preprocessor
    assert (pre.l_mean, pre.l_std) == (50., 50.)
    assert R.load(CFG).model.backbone.in_channels == 1


def test_choices_optimizer_schedule_data():
    cfg = R.load(CFG)
    # choices (the reference: Adam lr 3e-5, betas (0.9, 0.99), wd 1e-3, batch 40, 500k its.):
    # SGD lr 0.03 per 256 images, momentum 0.9, wd 1e-4 on everything, cosine over 200 epochs
    assert R.name_gpus_batch(CFG) == (8, 32) and R.total_batch(cfg, 8) == 256
    R.assert_values(R.optimizer(cfg), dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-4))
    assert set(R.effective_weight_decay(cfg).values()) == {1e-4}
    (sched, ) = R.schedulers(cfg)
    R.assert_values(sched, dict(type='CosineAnnealingLR', T_max=200, by_epoch=True, begin=0,
                                end=200))
    R.assert_values(cfg.train_cfg, dict(type='EpochBasedTrainLoop', max_epochs=200))
    pipeline = cfg.train_dataloader.dataset.pipeline
    # the reference: mirror: true, crop_size: 176 (a random crop); here 224 px random resized
    # crops of scale 0.2-1 and the same flip; no colour augmentation in either
    assert R.transform_types(pipeline) == ['LoadImageFromFile', 'RandomResizedCrop',
                                           'RandomFlip', 'PackInputs']
    R.assert_values(R.find_transform(pipeline, 'RandomResizedCrop'),
                    dict(scale=224, crop_ratio_range=[0.2, 1.0]))
    assert R.find_transform(pipeline, 'RandomFlip')['prob'] == 0.5
