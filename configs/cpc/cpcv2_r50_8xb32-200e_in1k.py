# CPC v2 (Henaff et al., "Data-Efficient Image Recognition with Contrastive Predictive Coding",
# ICML 2020), ResNet-50 patch encoder, ImageNet, 8 GPUs x 32 images (x 49 patches).
# Geometry (CPC's ImageNet setting): images resized to 300 x 300, random 256 x 256 crop + flip,
# cut (unfold, in the model) into a 7 x 7 grid of 64 px patches at stride 32 (half overlap).
# Each patch is augmented independently: horizontal flip (p 0.5) and Henaff et al.'s colour
# dropping (keep one of the three channels, p 0.5; the probabilities are our choice).
# Encoder: ResNet-50 with layer normalisation (GroupNorm with one group, as CPC v2 replaces
# BatchNorm: batch statistics shared by the patches of an image are a shortcut), the pooled
# 2048-d vector per patch.  Context network: a PixelCNN-style stack of 5 residual blocks with
# row-causal 2 x 3 convolutions (512 channels) over the 7 x 7 grid; linear predictors W_k for
# k = 1..5 rows below; InfoNCE of each prediction against the true patch vector (positive) and
# the vectors of all other locations and images of the per-GPU batch.
# Scores: cosine similarity at temperature 0.1 (CPCInfoNCELoss(normalize=True)), NOT CPC's raw
# dot product (normalize=False, temperature=1, the loss's defaults): with SGD the raw form
# collapsed in our check (the Fashion-MNIST config, first 30 iterations: within 6 iterations the
# loss sat at log(3136 candidates) = 8.05 and every patch vector was the same, std over
# locations 0.015), while the cosine form kept learning (8.06 -> 7.61, std 0.55).
# Deviations: ResNet-50 instead of the paper's ResNet-161; predictions downwards only (v2 also
# predicts from the other three directions); SGD lr 0.03 per 256 images, momentum 0.9, wd 1e-4,
# cosine, 200 epochs like this repo's other ResNet-50 recipes (CPC trained with Adam: to use it,
#   optim_wrapper = dict(optimizer=dict(_delete_=True, type='Adam', lr=4e-4)) ).
# kNN / transfer: model.backbone applied to whole images (layer-normalised ResNet-50).
#   bash tools/dist_train.sh configs/cpc/cpcv2_r50_8xb32-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 200
batch_size = 32  # images per GPU; the backbone sees 32 x 49 = 1568 patches per step

model = dict(
    type='CPCv2',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='GN', num_groups=1),
                  zero_init_residual=False),
    neck=dict(type='CPCContextNetwork', in_channels=2048, channels=512, num_blocks=5,
              kernel_size=(2, 3)),
    patch_size=64,
    patch_stride=32,
    pred_steps=5,
    loss=dict(type='CPCInfoNCELoss', temperature=0.1, normalize=True),
    patch_augment=dict(flip_prob=0.5, color_drop_prob=0.5))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(300, 300), backend='pillow'),
    dict(type='RandomCrop', crop_size=256),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03 * batch_size * 8 / 256, momentum=0.9,
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
