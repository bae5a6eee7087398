# ODC: Online Deep Clustering (Zhan, Xie, Liu, Ong & Loy, CVPR 2020), ResNet-50, ImageNet,
# 8 GPUs x 64, mmselfsup's schedule; what differs from mmselfsup: configs/odc/README.md.
#   bash tools/dist_train.sh configs/odc/odc_r50_8xb64-440e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_train_images = 1281167
num_clusters = 10000
max_epochs = 440
batch_size = 64  # per GPU

model = dict(
    type='ODC',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    # fc - BN(affine=False, momentum 0.001) - ReLU - dropout 0.5 - fc - ReLU, as mmselfsup's
    neck=dict(type='ODCNeck', in_channels=2048, hid_channels=512, out_channels=256,
              with_avg_pool=True, norm_cfg=dict(type='SyncBN')),
    head=dict(type='LinearClsHead', num_classes=num_clusters, in_channels=256,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    memory_bank=dict(type='ODCMemory', length=num_train_images, feat_dim=256, momentum=0.5,
                     num_classes=num_clusters, min_cluster_size=20),
    reweight_pow=0.5)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    # torchvision's RandomRotation(2): an angle uniform in [-2, 2] degrees, nearest, black fill
    dict(type='Rotate', magnitude_level=10, magnitude_range=(0, 2), magnitude_std='inf',
         total_level=10, random_negative_prob=0.5, prob=1.0, pad_val=0,
         interpolation='nearest'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=1.0, hue=0.5),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='PackInputs'),
]
extract_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    dict(type='ODCHook', pipeline=extract_pipeline, niter=20, seed=0, pca_dim=None,
         small_cluster_interval=1, batch_size=256, num_workers=8),
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.06 * batch_size * 8 / 512, momentum=0.9,
                   weight_decay=1e-5),
    paramwise_cfg=dict(custom_keys={'head': dict(momentum=0.)}))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[400], gamma=0.4)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=512)
