# AMDIM on Fashion-MNIST with the shared pretext budget: the ImageNet recipe's objective,
# views and Adam at 32 px, a 256-d embedding; choices: configs/amdim/README.md.
#   python tools/train.py configs/amdim/amdim_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./amdim_r50_4xb120-50e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    # at 32 px: stage 1 is 8 x 8 (the 7 x 7 role), stage 2 is 4 x 4 (the 5 x 5 role), stage 4
    # (1 x 1) is the global feature
    backbone=dict(_base_.fmnist_backbone, out_indices=(0, 1, 3)),
    neck=dict(out_channels=256))  # the encoder's last width, as 1536 = 8 x ndf in the recipe

view_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.3, 1.0),
         aspect_ratio_range=(0.7, 1.4), interpolation='bicubic', backend='pillow'),
    *_base_.fmnist_color_jitter,  # gray images: no saturation, hue or grayscale
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
