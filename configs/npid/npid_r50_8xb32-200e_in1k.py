# NPID (Wu et al., CVPR 2018), ResNet-50, ImageNet, 8 GPUs x 32 (batch 256 as in the paper), with
# the defaults of the paper / official code (lemniscate.pytorch).
#   bash tools/dist_train.sh configs/npid/npid_r50_8xb32-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_train_images = 1281167  # ImageNet-1k train; the memory bank holds one vector per image
max_epochs = 200
batch_size = 32  # per GPU

model = dict(
    type='NPID',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    neck=dict(type='LinearNeck', in_channels=2048, out_channels=128, gap_dim=2,
              norm_cfg=None),
    memory_bank=dict(type='MemoryBank', length=num_train_images, feat_dim=128, momentum=0.5,
                     num_negatives=4096, sampling='per_sample'),
    loss=dict(type='NCELoss', temperature=0.07))  # or dict(type='InfoNCELoss', temperature=0.07)

image_pipeline = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    *image_pipeline,
    dict(type='PackInputs'),  # keeps sample_idx: the memory bank index
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-4, nesterov=False))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[120, 160], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
