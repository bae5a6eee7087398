# Context Encoder (Pathak et al., CVPR 2016), ResNet-50 encoder, ImageNet, 8 GPUs x 32: the
# paper's 128 px crops with a central 64 x 64 hole, L2 loss on the hole only, Adam.
#   bash tools/dist_train.sh configs/inpainting/inpainting_r50_8xb32-coslr-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 200
batch_size = 32  # per GPU
crop_size = 128  # the paper's input; 4 x 4 bottleneck at stride 32
output_stride = 32  # ResNet-50: 128 px -> 4 x 4 feature map

model = dict(
    type='ContextEncoder',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    head=dict(
        type='ContextEncoderHead',
        in_channels=2048,
        channels=(512, 256, 128, 64, 64),
        out_channels=3,
        output_stride=output_stride,
        feat_size=crop_size // output_stride,
        bottleneck=True,
        upsample='deconv',
        norm_cfg=dict(type='SyncBN'),
        overlap_weight=0.0),
    fill_value=0.0)  # 0 = the normalisation (ImageNet) mean, as the paper fills the hole

# 'mask' is a default key of PackInputs (stored as a tensor on data_sample.mask)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=350, edge='short', backend='pillow'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='InpaintingMask', mode='center', ratio=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=2e-4, betas=(0.5, 0.999), weight_decay=0.))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
