# Colorization (Zhang, Isola & Efros, ECCV 2016, "Colorful Image Colorization") as a pretext
# task, ResNet-50, ImageNet, 8 GPUs x 32.  The backbone sees the lightness L only (in_channels=1,
# (L - 50) / 50) and predicts, on a stride-4 grid, a distribution over the Q = 262 in-gamut ab
# bins of a grid of size 10 (the paper's file has 313 bins: see configs/colorization/README.md).
# Paper defaults kept: soft-encoded targets (5 nearest bins, Gaussian sigma 5), class
# rebalancing with lambda 0.5 and a prior smoothed by sigma 5 (here estimated online as a running
# histogram of the training targets, all-reduced over ranks), output stride 4.
# Adapted to ResNet-50 (the paper's network is a VGG-style stack of dilated convs):
# * the stride-4 output is a hypercolumn of stages 2-4 (out_indices=(1, 2, 3), strides 8/16/32),
#   each 1x1-projected to 256 channels, bilinearly upsampled to stride 4 and summed;
# * SGD momentum 0.9, wd 1e-4, lr 0.03 per 256 images, cosine, 200 epochs: the recipe of the
#   other ResNet-50 configs of this repo.  The paper trained its BN-VGG with Adam (lr 3e-5,
#   betas (0.9, 0.99), wd 1e-3) for 450k iterations of batch 40 on 176 px crops; to use it:
#   optim_wrapper = dict(optimizer=dict(_delete_=True, type='Adam', lr=3e-5,
#                                       betas=(0.9, 0.99), weight_decay=1e-3))
# * 224 px random resized crops (scale 0.2-1) and flips; no colour augmentation (the colours
#   are the targets).  ImageNet's ~1-2% grayscale images are kept (their target is the neutral
#   bin); the paper dropped them.
#   bash tools/dist_train.sh configs/colorization/colorization_r50_8xb32-coslr-200e_in1k.py 8
# Transfer to RGB configs: tools/extract_backbone.py CKPT OUT --in-channels 3 (README).
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 200
batch_size = 32  # per GPU

model = dict(
    type='Colorization',
    data_preprocessor=dict(type='ColorizationDataPreprocessor', l_mean=50., l_std=50.,
                           to_rgb=True),
    backbone=dict(type='ResNet', depth=50, in_channels=1, out_indices=(1, 2, 3),
                  norm_cfg=dict(type='SyncBN'), zero_init_residual=False),
    head=dict(
        type='ColorizationHead',
        in_channels=(512, 1024, 2048),
        channels=256,
        out_stride=4,
        fuse='sum',
        quantizer=dict(grid_size=10, num_neighbours=5, sigma=5.0, prior_sigma=5.0),
        rebalance=True,
        rebalance_lambda=0.5,
        min_prior_pixels=100000,
        norm_cfg=dict(type='SyncBN')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.), backend='pillow'),
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
