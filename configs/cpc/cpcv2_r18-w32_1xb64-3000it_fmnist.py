# CPC v2 on Fashion-MNIST with the shared budget of the pretext methods
# (configs/_base_/pretext_fmnist.py): ResNet-18 at half width as the patch encoder, 32 px images
# cut into a 7 x 7 grid of 8 px patches at stride 4 (CPC's 256 px / 64 / 32 geometry scaled by
# 1/8; the backbone sees 64 x 49 = 3136 patches of 8 px per step, about the pixels of PIRL's
# step), the first 10000 training images, batch 64, 3000 iterations.
#   python tools/train.py configs/cpc/cpcv2_r18-w32_1xb64-3000it_fmnist.py
# Kept from the ImageNet recipe: layer normalisation in the encoder (GroupNorm, one group; the
# budget's BatchNorm only replaces SyncBN, and CPC v2 avoids batch statistics on purpose), the
# context network (5 blocks, 128 channels for the 256-d patch vectors), 5 prediction steps,
# cosine scores at T = 0.1 (raw dot products collapsed here under SGD: see the ImageNet config).
# Cost: about 1.5-3 s per iteration on 2 CPU cores (3135 negatives per prediction), several
# times the other pretext configs.
# Gray images: no colour dropping (it would only darken patches); per-patch flips kept.
# CAVEAT for kNN: the encoder is trained on 8 px patches but tools/knn_eval.py applies it to
# whole 32 px images (see configs/cpc/README.md).
# The ImageNet recipe is cpcv2_r50_8xb32-200e_in1k.py; this file only changes sizes, data and
# schedule.
_base_ = ['./cpcv2_r50_8xb32-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    backbone=dict(_base_.fmnist_backbone, norm_cfg=dict(type='GN', num_groups=1)),
    neck=dict(in_channels=256, channels=128),
    patch_size=8,
    patch_stride=4,
    patch_augment=dict(flip_prob=0.5, color_drop_prob=0.0))

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
