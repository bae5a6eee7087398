# RotNet (Gidaris, Singh & Komodakis, ICLR 2018), ResNet-50, ImageNet, 8 GPUs x 32 images, all
# four rotations of every image in the same batch (the paper's best setting and schedule).
#   bash tools/dist_train.sh configs/rotation/rotation_r50_8xb32-30e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 30
batch_size = 32  # images per GPU (x4 rotations)

model = dict(
    type='RotationPrediction',
    data_preprocessor=dict(
        type='PatchViewDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    head=dict(type='PretextClsHead', in_channels=2048, num_classes=4))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='AllRotations90', angles=(0, 90, 180, 270)),
    dict(type='PackInputs', algorithm_keys=['rot_label']),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1 * batch_size * 8 / 256, momentum=0.9,
                   weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[10, 20, 25], gamma=0.2)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
