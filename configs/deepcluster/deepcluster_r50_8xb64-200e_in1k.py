# DeepCluster (Caron, Bojanowski, Joulin & Douze, ECCV 2018), ResNet-50 on Sobel input, ImageNet,
# 8 GPUs x 64: k-means (K = 10000) of the whole training set every epoch; configs/deepcluster/.
#   bash tools/dist_train.sh configs/deepcluster/deepcluster_r50_8xb64-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_train_images = 1281167  # one pseudo label per training image
num_clusters = 10000
max_epochs = 200
batch_size = 64  # per GPU

model = dict(
    type='DeepCluster',
    num_samples=num_train_images,
    data_preprocessor=dict(
        type='SobelDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, in_channels=2, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=num_clusters, in_channels=2048,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
# features for k-means: no augmentation
extract_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    sampler=dict(type='ClusterUniformSampler', _delete_=True),  # uniform over clusters
    dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    dict(type='DeepClusterHook', pipeline=extract_pipeline, interval=1, pca_dim=256,
         whiten=True, l2_normalize=True, niter=20, seed=0, batch_size=256, num_workers=8),
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05 * batch_size * 8 / 256, momentum=0.9,
                   weight_decay=1e-5),
    paramwise_cfg=dict(custom_keys={'head': dict(momentum=0.)}))  # head re-initialised every epoch
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=max_epochs)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
