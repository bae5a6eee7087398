# Colorization (Zhang, Isola & Efros, ECCV 2016) as a pretext task, ResNet-50 on the L channel,
# ImageNet, 8 GPUs x 32; paper defaults and our changes: configs/colorization/README.md.
#   bash tools/dist_train.sh configs/colorization/colorization_r50_8xb32-coslr-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 200
batch_size = 32  # per GPU

model = dict(
    type='Colorization',
    data_preprocessor=dict(type='ColorizationDataPreprocessor', l_mean=50., l_std=50.,
                           to_rgb=True),
    # sees L only; stages 2-4 feed the head's stride-4 hypercolumn
    backbone=dict(type='ResNet', depth=50, in_channels=1, out_indices=(1, 2, 3),
                  norm_cfg=dict(type='SyncBN'), zero_init_residual=False),
    head=dict(
        type='ColorizationHead',
        in_channels=(512, 1024, 2048),
        channels=256,
        out_stride=4,
        fuse='sum',
        # soft targets over the 10 nearest bins: the reference's NNEncLayer (the paper says 5)
        quantizer=dict(grid_size=10, num_neighbours=10, sigma=5.0, prior_sigma=5.0),
        rebalance=True,
        rebalance_lambda=0.5,
        # the rebalancing weights stay uniform until the online prior has counted this many pixels
        min_prior_pixels=100000,
        norm_cfg=dict(type='SyncBN')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # no colour augmentation: the colours are the targets
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

# the other ResNet-50 recipes' SGD; the paper's Adam is in the README
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
