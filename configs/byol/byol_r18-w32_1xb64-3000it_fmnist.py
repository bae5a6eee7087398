# mmpretrain's own BYOL recipe (reused, not rewritten) on Fashion-MNIST with the shared pretext
# budget: half-width ResNet-18, 32 px views without blur; configs/byol/README.md.
#   python tools/train.py configs/byol/byol_r18-w32_1xb64-3000it_fmnist.py
_base_ = [
    'mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py',
    '../_base_/pretext_fmnist.py',  # the shared budget; inherits ../_base_/datasets/fmnist_knn.py
    '../_base_/default_runtime.py',  # our runtime (exact resume, guards)
]
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

model = dict(backbone=_base_.fmnist_backbone, neck=dict(in_channels=256))

# the recipe's two views, at 32 px and without blur
view_pipeline1 = [
    dict(t, scale=32) if t['type'] == 'RandomResizedCrop' else t
    for t in _base_.view_pipeline1 if t['type'] != 'GaussianBlur'
]
view_pipeline2 = [
    dict(t, scale=32) if t['type'] == 'RandomResizedCrop' else t
    for t in _base_.view_pipeline2 if t['type'] != 'GaussianBlur'
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1], transforms=[view_pipeline1, view_pipeline2]),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=4.8 * _base_.fmnist_batch_size / 4096))
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
