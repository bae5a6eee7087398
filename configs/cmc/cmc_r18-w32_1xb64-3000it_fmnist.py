# CMC (L / ab views) on Fashion-MNIST with the shared budget of the pretext methods
# (configs/_base_/pretext_fmnist.py): two ResNet-18s at half width (L encoder: 1 channel, ab
# encoder: 2 channels), 32 px crops, the first 10000 training images, memory banks of
# 10000 x 128 with 4096 negatives, InfoNCE at T = 0.07, batch 64, 3000 iterations.
#   python tools/train.py configs/cmc/cmc_r18-w32_1xb64-3000it_fmnist.py
# CAVEAT: Fashion-MNIST is grayscale, so ab is 0 everywhere: the ab view carries no information,
# its encoder sees a constant image, and the L encoder's only positive (the ab bank entry of the
# same image) cannot tell images apart.  The config exists so that the paper's recipe builds,
# trains and is evaluated like every other method (a "degenerate views" control); the two-crop
# split cmc-lcrops_r18-w32_1xb64-3000it_fmnist.py is the CMC that learns on gray images.
# kNN: tools/knn_eval.py CONFIG CKPT evaluates the L encoder (model.backbone).
# The ImageNet recipe is cmc_r50_8xb32-200e_in1k.py; this file only changes sizes, data and
# schedule.
_base_ = ['./cmc_r50_8xb32-200e_in1k.py', '../_base_/pretext_fmnist.py']

num_train_images = _base_.fmnist_num_train_images

model = dict(
    backbones=[dict(_base_.half_resnet50, **_base_.fmnist_backbone, in_channels=1),
               dict(_base_.half_resnet50, **_base_.fmnist_backbone, in_channels=2)],
    neck=dict(in_channels=256),
    memory_bank=dict(length=num_train_images, num_negatives=4096))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
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
