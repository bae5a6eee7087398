# Exemplar-CNN (Dosovitskiy et al., TPAMI 2016), ResNet-50, ImageNet, 8 GPUs x 32: 8000 seed
# images (an evenly strided subset of the class-sorted training list, so every class gives
# seeds), each its own surrogate class populated by the paper's augmentations (section 2.1 of
# the paper: translation, scale 0.7-1.4, rotation up to 20 degrees, contrast, colour);
# configs/exemplar_cnn/README.md.
#   bash tools/dist_train.sh configs/exemplar_cnn/exemplar-cnn_r50_8xb32-300e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_train_images = 1281167  # ImageNet-1k train
# the paper's accuracy stops improving beyond about 8000 surrogate classes (its Fig. 3)
num_exemplars = 8000
seed_stride = num_train_images // num_exemplars  # 160: seeds 0, 160, 320, ... of the list
max_epochs = 300  # passes over the seed set: 300 augmented samples per surrogate class
batch_size = 32  # per GPU

model = dict(
    type='ExemplarCNN',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    # global pooling, dropout 0.5 before the classifier (the paper's fully connected layers
    # use dropout), one output per seed image
    head=dict(type='PretextClsHead', in_channels=2048, num_classes=num_exemplars, dropout=0.5))

# the paper's elementary transformations, each with its range drawn uniformly per sample
exemplar_augmentation = [
    # translation (the crop's position) and isotropic scaling: a square crop of 1 / 1.4 to the
    # whole side, resized back (a magnification of 1 to 1.4; the paper also shrinks to 0.7,
    # which a crop cannot do)
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.5, 1.),
         aspect_ratio_range=(1., 1.), backend='pillow'),
    # rotation: uniform in [-20, 20] degrees
    dict(type='Rotate', magnitude_range=(0, 20), magnitude_std='inf', prob=1.0,
         random_negative_prob=0.5, interpolation='bilinear'),
    # contrast 2 (value scaled by 0.7-1.4, saturation changed), contrast 1 (a contrast factor
    # standing in for the per-principal-component scaling by 0.5-2), colour (hue +-0.1)
    dict(type='ColorJitter', brightness=0.4, contrast=0.5, saturation=0.5, hue=0.1),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    *exemplar_augmentation,
    dict(type='PackInputs'),  # keeps sample_idx: the surrogate class
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(indices=list(range(0, seed_stride * num_exemplars, seed_stride)),
                 pipeline=train_pipeline))
# the seed set and the classifier must agree (one class per seed image)
custom_hooks = [dict(type='ExemplarClassesCheckHook')]

# SGD with momentum 0.9 as in the paper; lr / weight decay / schedule: mmpretrain's ResNet-50
# ImageNet classification recipe (batch 256), over the seed set's epochs
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
