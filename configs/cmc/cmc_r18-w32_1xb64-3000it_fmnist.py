# CMC (L / ab views) on Fashion-MNIST with the shared pretext budget.  Gray images make the ab
# view constant: a "degenerate views" control (configs/cmc/README.md).
#   python tools/train.py configs/cmc/cmc_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./cmc_r50_8xb32-240e_in1k.py', '../_base_/pretext_fmnist.py']

num_train_images = _base_.fmnist_num_train_images

model = dict(
    backbones=[dict(_base_.half_resnet50, **_base_.fmnist_backbone, in_channels=1),
               dict(_base_.half_resnet50, **_base_.fmnist_backbone, in_channels=2)],
    neck=dict(in_channels=256),
    # one negative set per batch, the batch's own entries excluded (see the README)
    memory_bank=dict(length=num_train_images, num_negatives=4096, sampling='shared'))

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
