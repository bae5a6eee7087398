# NPID on Fashion-MNIST with the shared pretext budget and PIRL's Fashion-MNIST choices (InfoNCE,
# 4096 shared negatives, PIRL's image-view augmentation); configs/npid/README.md.
#   python tools/train.py configs/npid/npid_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./npid_r50_8xb32-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    backbone=_base_.fmnist_backbone,
    neck=dict(in_channels=256),
    memory_bank=dict(length=_base_.fmnist_num_train_images, num_negatives=4096,
                     sampling='shared'),
    loss=dict(type='InfoNCELoss', temperature=0.07))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
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
