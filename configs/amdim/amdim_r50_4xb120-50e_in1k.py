# AMDIM (Bachman, Hjelm & Buchwalter, NeurIPS 2019) with a ResNet-50 encoder, ImageNet at
# 128 px, 4 GPUs x 120 images: the official recipe (Philip-Bachman/amdim-public: README.md's
# ImageNet command, train.py, task_self_supervised.py, datasets.py TransformsImageNet128);
# what replaces AMDIM's encoder and why: configs/amdim/README.md.
#   bash tools/dist_train.sh configs/amdim/amdim_r50_4xb120-50e_in1k.py 4
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 50
batch_size = 120  # per GPU; the README's --batch_size 480 on 4 GPUs
warmup_iters = 500  # the official linear warm-up: lr * (t + 1) / 500 for updates t < 500

model = dict(
    type='AMDIM',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    # at 128 px: stage 3 is 8 x 8 (the 7 x 7 role), stage 4 is 4 x 4 (the 5 x 5 role) and,
    # pooled, the global feature
    backbone=dict(type='ResNet', depth=50, out_indices=(2, 3), zero_init_residual=False),
    neck=dict(type='AMDIMEmbeddingNeck', out_channels=1536, local_indices=(0, 1)),  # n_rkhs
    loss=dict(type='AMDIMNCELoss', tclip=20.0, score_reg=0.05),
    gather_negatives=True)  # negatives from all 480 images, as the official DataParallel

# one horizontal flip per image shared by both views, then per view: crop, jitter, grayscale
view_pipeline = [
    dict(type='RandomResizedCrop', scale=128, crop_ratio_range=(0.3, 1.0),
         aspect_ratio_range=(0.7, 1.4), interpolation='bicubic', backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4,
                          hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.25, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

# Adam on every parameter (weight decay included); the README's --amp is tools/train.py --amp
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=2e-4, betas=(0.8, 0.999), eps=1e-8, weight_decay=1e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=1 / warmup_iters, by_epoch=False, begin=0,
         end=warmup_iters),
    # scheduler.step(epoch) at the end of epoch e sets the lr of e + 1 with milestones
    # [30, 45]: the first epochs at 0.2x and 0.04x are 31 and 46 (counted from 0)
    dict(type='MultiStepLR', by_epoch=True, milestones=[31, 46], gamma=0.2),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=480)
