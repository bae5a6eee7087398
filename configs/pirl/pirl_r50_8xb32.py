# PIRL (Misra & van der Maaten, CVPR 2020), jigsaw transform, ResNet-50, ImageNet, 8 GPUs x 32;
# paper / VISSL defaults (configs/pirl/README.md).
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
    memory_bank=dict(type='MemoryBank', length=num_train_images, feat_dim=128, momentum=0.5,
                     num_negatives=32000, sampling='shared'),
    loss=dict(type='NCELoss', temperature=0.07),  # or dict(type='InfoNCELoss', temperature=0.07)
    loss_lambda=0.5)

# colour augmentation shared by the image view and (per patch) the jigsaw view
patch_pipeline = [
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4,
                          hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
image_pipeline = [
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    *patch_pipeline,
    dict(type='RandomFlip', prob=0.5),
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

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.12 * batch_size * 8 / 1024, momentum=0.9,
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
