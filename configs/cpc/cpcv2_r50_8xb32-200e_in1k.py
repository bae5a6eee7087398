# CPC v2 (Henaff et al., ICML 2020), ResNet-50 patch encoder, ImageNet, 8 GPUs x 32 images; a
# 256 px crop cut into 7 x 7 patches of 64 px; deviations from the paper: configs/cpc/README.md.
#   bash tools/dist_train.sh configs/cpc/cpcv2_r50_8xb32-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 200
batch_size = 32  # images per GPU; the backbone sees 32 x 49 = 1568 patches per step

model = dict(
    type='CPCv2',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='GN', num_groups=1),  # layer norm
                  zero_init_residual=False),
    neck=dict(type='CPCContextNetwork', in_channels=2048, channels=512, num_blocks=5,
              kernel_size=(2, 3)),
    patch_size=64,
    patch_stride=32,
    # appendix A.2 pseudo-code (steps_to_ignore=2, steps_to_predict=3): only the row 3 below
    skip_steps=2,
    pred_steps=1,
    loss=dict(type='CPCInfoNCELoss', temperature=0.1, normalize=True),  # cosine: raw dot collapses
    patch_augment=dict(flip_prob=0.5, color_drop_prob=0.5))  # per patch

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(300, 300), backend='pillow'),
    dict(type='RandomCrop', crop_size=256),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03 * batch_size * 8 / 256, momentum=0.9,
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
