# The one network recipe of ClusterFit's label-noise control experiment (Yan et al. 2020, Fig. 6)
# in miniature: N_pre, N_cf and N_distill; the tool sets labels, classes, loss and schedule.
#   python tools/clusterfit.py noise-control --work-dir work_dirs/clusterfit-noise-control
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/datasets/fmnist_png.py',
    '../_base_/default_runtime.py',  # our runtime (exact resume, guards)
]
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

width = 32
num_classes = 5  # |A|: Fashion-MNIST classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat)
img_size = 32
batch_size = 64
max_iters = 600
warmup_iters = 60

model = dict(
    data_preprocessor=dict(
        type='ClsDataPreprocessor', num_classes=num_classes,
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(stem_channels=width, base_channels=width),
    head=dict(in_channels=8 * width, num_classes=num_classes, topk=(1, )))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.0),
         backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root={{_base_.fmnist_data_root}},
        data_prefix='train',
        ann_file='{{ fileDirname }}/../../work_dirs/clusterfit-noise-control/data/train_A.txt',
        pipeline=train_pipeline))
# evaluation is weighted kNN on the held-out classes B, done by the tool
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1 * batch_size / 256, momentum=0.9,
                                    weight_decay=1e-4),
                     paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', T_max=max_iters - warmup_iters, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=200, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=64)
