# DINO (Caron et al., ICCV 2021) with a ResNet-50 on ImageNet, 8 GPUs x 64, 100 epochs: the
# facebookresearch/dino README's ResNet-50 command, main_dino.py defaults for the rest.
#   bash tools/dist_train.sh configs/dino/dino_r50_8xb64-100e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_gpus = 8
batch_size = 64  # per GPU
max_epochs = 100
warmup_epochs = 10
iters_per_epoch = 1281167 // (num_gpus * batch_size)  # drop_last: 2502 steps per epoch
num_local_crops = 8
out_channels = 65536

model = dict(
    type='MMSSLDINO',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='MMSSLDINOHead', in_channels=2048, out_channels=out_channels,
              hidden_channels=2048, bottleneck_channels=256, num_layers=3, use_bn=False,
              norm_last_layer=True),
    loss=dict(type='MMSSLDINOLoss', out_channels=out_channels, num_global_crops=2,
              student_temp=0.1, teacher_temp=0.04, warmup_teacher_temp=0.04, warmup_iters=0,
              center_momentum=0.9),
    base_momentum=0.996,
    freeze_last_layer_iters=1 * iters_per_epoch)

color_jitter = [
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2,
                          hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
global_crop = dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.14, 1.),
                   interpolation='bicubic', backend='pillow')
local_crop = dict(type='RandomResizedCrop', scale=96, crop_ratio_range=(0.05, 0.14),
                  interpolation='bicubic', backend='pillow')
global_pipeline1 = [
    global_crop, *color_jitter,
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=1.0),
]
global_pipeline2 = [
    global_crop, *color_jitter,
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.1),
    dict(type='Solarize', thr=128, prob=0.2),
]
local_pipeline = [
    local_crop, *color_jitter,
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1, num_local_crops],
         transforms=[global_pipeline1, global_pipeline2, local_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=10,
    dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03 * batch_size * num_gpus / 256, momentum=0.9,
                   weight_decay=1e-4),
    clip_grad=dict(max_norm=3.0),  # global norm; the official code clips per parameter
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=1e-6,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
