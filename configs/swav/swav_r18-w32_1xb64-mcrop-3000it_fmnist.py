# mmpretrain's own SwAV recipe on Fashion-MNIST with the shared pretext budget: half-width
# ResNet-18, multi-crop 2 x 32 + 6 x 16 px; what changed and why: configs/swav/README.md.
#   python tools/train.py configs/swav/swav_r18-w32_1xb64-mcrop-3000it_fmnist.py
_base_ = [
    'mmpretrain::swav/swav_resnet50_8xb32-mcrop-coslr-200e_in1k-224px-96px.py',
    '../_base_/pretext_fmnist.py',  # the shared budget; inherits ../_base_/datasets/fmnist_knn.py
    '../_base_/default_runtime.py',  # our runtime (exact resume, guards)
]
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

model = dict(backbone=_base_.fmnist_backbone, neck=dict(in_channels=256))

# the recipe's global (224 -> 32 px) and local (96 -> 16 px) crops, without blur
view_pipeline1 = [
    dict(t, scale=32) if t['type'] == 'RandomResizedCrop' else t
    for t in _base_.view_pipeline1 if t['type'] != 'GaussianBlur'
]
view_pipeline2 = [
    dict(t, scale=16) if t['type'] == 'RandomResizedCrop' else t
    for t in _base_.view_pipeline2 if t['type'] != 'GaussianBlur'
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=_base_.num_crops,
         transforms=[view_pipeline1, view_pipeline2]),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))

# the recipe's LARS lr 0.6 at batch 256, scaled linearly
optim_wrapper = dict(optimizer=dict(lr=0.6 * _base_.fmnist_batch_size / 256))
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
custom_hooks = [
    # SwAVHook that checkpoints its queue; queue from the start, prototypes frozen for one epoch
    dict(_base_.custom_hooks[0],
         type='ResumableSwAVHook',
         batch_size=_base_.fmnist_batch_size,
         epoch_queue_starts=0,
         frozen_layers_cfg=dict(
             prototypes=_base_.fmnist_num_train_images // _base_.fmnist_batch_size))
]
