# RotNet (Gidaris, Singh & Komodakis, ICLR 2018), ResNet-50, ImageNet, 8 GPUs x 24 images: all
# four rotations of every image in the same batch; the official code's ImageNet recipe
# (gidariss/FeatureLearningRotNet, config/ImageNet_RotNet_AlexNet.py): configs/rotation/README.md.
#   bash tools/dist_train.sh configs/rotation/rotation_r50_8xb24-50e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 50
batch_size = 24  # images per GPU (x4 rotations): 8 x 24 = the official batch of 192 images

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

# lr 0.01 for 192 images: the official LUT_lr sets it before the first epoch (its nominal 0.1
# is never used), then /10 at epochs 15, 30 and 45
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01 * batch_size * 8 / 192, momentum=0.9,
                   weight_decay=5e-4, nesterov=True))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[15, 30, 45], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=192)
