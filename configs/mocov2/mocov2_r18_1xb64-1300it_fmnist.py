# mmpretrain's own MoCo v2 recipe (reused, not rewritten) on Fashion-MNIST, sized for 2 CPU cores:
# ResNet-18 at 32 px, queue 4096, no blur, an iteration-based cosine schedule.
#   python tools/train.py configs/mocov2/mocov2_r18_1xb64-1300it_fmnist.py
_base_ = [
    'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py',
    '../_base_/datasets/fmnist_knn.py',
    '../_base_/default_runtime.py',  # our runtime (exact resume, guards)
]
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

img_size = 32
batch_size = 64
max_iters = 1300

model = dict(
    queue_len=4096,
    backbone=dict(depth=18),
    neck=dict(in_channels=512, hid_channels=512, out_channels=128))

view_pipeline = [
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.),
         backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                          saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        data_root={{_base_.fmnist_data_root}},
        metainfo={{_base_.fmnist_metainfo}},
        pipeline=train_pipeline))

# lr 0.03 x 64/256 scaled up 2x for the short schedule
optim_wrapper = dict(optimizer=dict(lr=0.015 * 2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=650, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=64)
