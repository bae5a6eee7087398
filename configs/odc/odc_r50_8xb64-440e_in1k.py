# ODC: Online Deep Clustering (Zhan, Xie, Liu, Ong & Loy, CVPR 2020), ResNet-50, ImageNet,
# 8 GPUs x 64.  A memory holds one 256-d feature and one cluster label per image and K = 10000
# centroids.  Before the first iteration ODCHook fills it with a k-means (faiss, no PCA) of the
# initial network's neck features of the whole training set (resize 256 + centre crop 224).
# Every iteration: CE against the memory labels, weighted by 1/sqrt(cluster size); the batch's
# features enter the memory (EMA, momentum 0.5), the batch's samples move to their nearest
# centroid, the touched centroids are recomputed; clusters below 20 samples are dissolved and
# re-created by splitting the largest cluster.  Neck 2048 -> 512 -> 256 (mmselfsup's ODCNeck,
# here mmpretrain's NonLinearNeck without dropout), linear head.  SGD lr 0.06 for 512 images,
# momentum 0.9 (0 for the head), wd 1e-5, 440 epochs, lr x0.1 at 400 (mmselfsup's schedule).
# Augmentation as the paper: crop, flip, colour jitter, grayscale (the paper's small random
# rotation is left out: mmpretrain has no continuous-angle rotation transform).
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
    neck=dict(type='NonLinearNeck', in_channels=2048, hid_channels=512, out_channels=256,
              num_layers=2, with_bias=True, with_last_bn=False, with_last_bias=True,
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
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[400], gamma=0.1)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=512)
