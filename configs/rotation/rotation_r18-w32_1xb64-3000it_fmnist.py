# RotNet on Fashion-MNIST with the shared pretext budget: all four rotations of each 32 px crop
# (the backbone sees 256 images per step); results: configs/rotation/README.md.
#   python tools/train.py configs/rotation/rotation_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./rotation_r50_8xb24-50e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(backbone=_base_.fmnist_backbone, head=dict(in_channels=256))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.35, 1.0), backend='pillow'),
    *_base_.fmnist_color_jitter,
    dict(type='RandomFlip', prob=0.5),
    dict(type='AllRotations90', angles=(0, 90, 180, 270)),
    dict(type='PackInputs', algorithm_keys=['rot_label']),
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
