# Contractive auto-encoder on Fashion-MNIST with the shared pretext budget: 500 sigmoid code
# units, lambda 0.1 on the projection estimate of ||dh/dx||^2, cross-entropy on [0, 1] images,
# Adam; why: configs/contractive_ae/README.md.
#   python tools/train.py configs/contractive_ae/contractive-ae_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./contractive-ae_r50_8xb32-coslr-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    backbone=_base_.fmnist_backbone,
    head=dict(fc_channels=128, norm_cfg=dict(type='BN')),
    input_size=32)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)  # Adam lr 1e-3 at batch 64
