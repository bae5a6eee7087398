# PIRL (Misra & van der Maaten, CVPR 2020), jigsaw transform, ResNet-50, ImageNet, 8 GPUs x 32:
# VISSL's pirl_jigsaw_4node_resnet50.yaml at a quarter of its 4-node batch (lr scaled linearly),
# 200 epochs as its epochs_200.yaml (VISSL's main config trains 800: pirl_r50_8xb32-800e_in1k.py).
# What still differs from VISSL: configs/pirl/README.md, "ImageNet recipe and VISSL".
#   bash tools/dist_train.sh configs/pirl/pirl_r50_8xb32.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_train_images = 1281167  # ImageNet-1k train; the memory bank holds one vector per image
max_epochs = 200
batch_size = 32  # per GPU

model = dict(
    type='PIRL',
    data_preprocessor=dict(
        type='PatchViewDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    neck=dict(type='LinearNeck', in_channels=2048, out_channels=128, gap_dim=2,
              norm_cfg=None),  # f: a linear projection, as in the paper
    transform_neck=dict(type='JigsawProjectionNeck', in_channels=2048, num_patches=9,
                        patch_channels=128, out_channels=128),
    # VISSL draws 32000 negatives per sample, and anew for each of the two loss terms
    memory_bank=dict(type='MemoryBank', length=num_train_images, feat_dim=128, momentum=0.5,
                     num_negatives=32000, sampling='per_sample'),
    shared_negatives=False,
    loss=dict(type='NCELoss', temperature=0.07),  # or dict(type='InfoNCELoss', temperature=0.07)
    loss_lambda=0.5,
    # VISSL's BatchNorm running statistics track both backbone calls (image and patches)
    transformed_bn_stats=True)

# VISSL's per-view augmentation, drawn independently for the image view and for each patch
patch_pipeline = [
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
    # VISSL's ImgPilRandomPhotometric(p=0.66): the four ops together, each value drawn uniformly
    dict(type='RandomApply', prob=0.66, transforms=[
        dict(type='Posterize', magnitude_range=(3, 8), magnitude_std='inf', prob=1.),  # 4-8 bits
        dict(type='Sharpness', magnitude_range=(0., 0.9), magnitude_std='inf',
             prob=1.),  # factor 1 +- U(0, 0.9)
        dict(type='Solarize', magnitude_range=(0, 256), magnitude_std='inf', prob=1.),
        dict(type='AutoContrast', prob=1.),
    ]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomFlip', prob=0.5),
]
image_pipeline = [
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    *patch_pipeline,
]
transform_pipeline = [
    dict(type='JigsawPatches', grid=3, crop_size=255, crop_scale=(0.6, 1.0), patch_size=64,
         num_permutations=362880, permutation_seed=0, patch_pipeline=patch_pipeline),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PIRLViews', image_pipeline=image_pipeline,
         transform_pipeline=transform_pipeline),
    dict(type='PackInputs', algorithm_keys=['jigsaw_label']),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

# VISSL: lr 0.12 for batch 1024, no weight decay on BatchNorm and bias parameters
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.12 * batch_size * 8 / 1024, momentum=0.9,
                   weight_decay=1e-4, nesterov=False),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
# cosine per epoch down to 1/1000 of the start lr (VISSL: 0.12 -> 0.00012)
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min_ratio=1e-3, by_epoch=True,
         begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
