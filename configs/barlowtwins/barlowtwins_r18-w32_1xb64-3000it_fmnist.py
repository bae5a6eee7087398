# mmpretrain's own Barlow Twins (reused, not rewritten) on Fashion-MNIST with the budget every
# method shares (configs/_base_/pretext_fmnist.py): ResNet-18 at half width (last stage 256
# channels), 32 px, the first 10000 training images, batch 64, 3000 iterations, 100-iteration
# linear warm-up then cosine, checkpoints every 1000, seed 0.  Everything else is mmpretrain's
# 300-epoch ImageNet recipe: BYOL's two views (only resized to 32 px and without the Gaussian
# blur, which erases a 32 px image; solarisation kept), the 8192-8192-8192 projector after the
# 256-d backbone, the cross-correlation loss and LARS with the recipe's lr 1.6 at batch 2048
# scaled linearly to batch 64 (biases and BN at 0.024x, as in the recipe).  The 8192-d projector
# (~134M parameters) dominates the cost of a step: it is the recipe's, kept for comparability.
#   python tools/train.py configs/barlowtwins/barlowtwins_r18-w32_1xb64-3000it_fmnist.py
_base_ = [
    'mmpretrain::barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py',
    '../_base_/pretext_fmnist.py',  # the shared budget; inherits ../_base_/datasets/fmnist_knn.py
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

optim_wrapper = dict(optimizer=dict(lr=1.6 * _base_.fmnist_batch_size / 2048))
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
