# SeLa (Asano, Rupprecht & Vedaldi, ICLR 2020), ResNet-50, ImageNet, 8 GPUs x 32 (batch 256): the
# official scripts/resnet.sh with main.py's defaults: 10 heads x 3000 pseudo classes, 100 label
# optimisations by Sinkhorn-Knopp (lambda 25), 400 epochs.  The official network is a
# pre-activation ResNet-50; this config uses mmpretrain's ResNet-50 (configs/sela/README.md).
#   bash tools/dist_train.sh configs/sela/sela_r50_8xb32-400e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_train_images = 1281167
max_epochs = 400
batch_size = 32  # per GPU

model = dict(
    type='SeLa',
    num_samples=num_train_images,
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='SeLaHead', in_channels=2048, num_classes=3000, num_heads=10))

# data.py, augs=3
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=batch_size, drop_last=False,
                        dataset=dict(pipeline=train_pipeline))
custom_hooks = [
    # the official pseudo_loader is the training loader: labels from augmented images
    dict(type='SeLaHook', pipeline=train_pipeline, num_opts=100, lamb=25.0, tol=0.1,
         batch_size=256, num_workers=8),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.08, momentum=0.9, weight_decay=1e-5))
# lr x 0.1 every 150 epochs, x 0.001 from epoch 350 (the official lr_schedule)
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[150, 300, 350], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
