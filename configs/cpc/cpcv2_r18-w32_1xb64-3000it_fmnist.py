# CPC v2 on Fashion-MNIST with the shared pretext budget: the ImageNet recipe's 7 x 7 grid scaled
# by 1/8 (8 px patches at stride 4 on 32 px images); choices: configs/cpc/README.md.
#   python tools/train.py configs/cpc/cpcv2_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./cpcv2_r50_8xb32-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    # layer normalisation kept: CPC v2 avoids batch statistics shared by an image's patches
    backbone=dict(_base_.fmnist_backbone, norm_cfg=dict(type='GN', num_groups=1)),
    neck=dict(in_channels=256, channels=128),
    patch_size=8,
    patch_stride=4,
    patch_augment=dict(flip_prob=0.5, color_drop_prob=0.0))  # gray images: no colour dropping

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.35, 1.), backend='pillow'),
    *_base_.fmnist_color_jitter,
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
optim_wrapper = _base_.fmnist_optim_wrapper
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
