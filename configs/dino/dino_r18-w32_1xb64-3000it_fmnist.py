# DINO with a half-width ResNet-18 on Fashion-MNIST with the shared pretext budget: 2 x 32 px +
# 6 x 16 px crops, 4096 prototypes; why a BatchNorm head and tau_t 0.04: configs/dino/README.md.
#   python tools/train.py configs/dino/dino_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./dino_r50_8xb64-100e_in1k.py', '../_base_/pretext_fmnist.py']

out_channels = 4096
model = dict(
    backbone=_base_.fmnist_backbone,
    head=dict(in_channels=256, hidden_channels=1024, bottleneck_channels=256,
              out_channels=out_channels, use_bn=True),
    loss=dict(out_channels=out_channels, teacher_temp=0.04, warmup_teacher_temp=0.04,
              warmup_iters=0),
    # last layer frozen for the first epoch of the 10k images
    freeze_last_layer_iters=10000 // 64)

global_crop = dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.4, 1.),
                   interpolation='bicubic', backend='pillow')
local_crop = dict(type='RandomResizedCrop', scale=16, crop_ratio_range=(0.05, 0.4),
                  interpolation='bicubic', backend='pillow')
# gray images: brightness / contrast jitter only; no blur (it erases a 32 px image)
flip = dict(type='RandomFlip', prob=0.5)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1, 6],
         transforms=[
             [global_crop, flip, *_base_.fmnist_color_jitter],
             [global_crop, flip, *_base_.fmnist_color_jitter,
              dict(type='Solarize', thr=128, prob=0.2)],
             [local_crop, flip, *_base_.fmnist_color_jitter],
         ]),
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
