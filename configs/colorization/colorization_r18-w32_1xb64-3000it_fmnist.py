# Colorization on Fashion-MNIST with the shared pretext budget.  Gray images make the task
# trivial: a "learns nothing useful" control, not a result (configs/colorization/README.md).
#   python tools/train.py configs/colorization/colorization_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./colorization_r50_8xb32-coslr-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    backbone=_base_.fmnist_backbone,
    # 5 nearest bins, as measured (the ImageNet recipe: the reference's 10)
    head=dict(in_channels=(64, 128, 256), channels=64, norm_cfg=dict(type='BN'),
              quantizer=dict(num_neighbours=5)))

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
