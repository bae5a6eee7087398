# SeLa on Fashion-MNIST with the shared pretext budget: 10 heads x 100 pseudo classes, 20 label
# optimisations on the official quadratic schedule; configs/sela/README.md.
#   python tools/train.py configs/sela/sela_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./sela_r50_8xb32-400e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    num_samples=_base_.fmnist_num_train_images,
    data_preprocessor=dict(type='SelfSupDataPreprocessor'),
    backbone=_base_.fmnist_backbone,
    head=dict(in_channels=256, num_classes=100, num_heads=10))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, backend='pillow'),
    *_base_.fmnist_color_jitter,
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
custom_hooks = [
    dict(type='SeLaHook', pipeline=train_pipeline, num_opts=20, lamb=25.0, tol=0.1,
         batch_size=256, num_workers=2),
]
optim_wrapper = _base_.fmnist_optim_wrapper
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
