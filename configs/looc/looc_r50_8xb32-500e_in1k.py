# LooC (Xiao, Wang, Efros & Darrell, ICLR 2021), ResNet-50, ImageNet, 8 GPUs x 32: MoCo v2 with
# one all-invariant embedding space and one leave-one-out space per augmentation (colour,
# rotation), the paper's MoCo v2 settings (batch 256, lr 0.03 cosine, 500 epochs, queue 16384,
# temperature 0.2, momentum 0.999); configs/looc/README.md.
#   bash tools/dist_train.sh configs/looc/looc_r50_8xb32-500e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 500
batch_size = 32  # per GPU

model = dict(
    type='LooC',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='BN'), zero_init_residual=False),
    # one MoCo v2 MLP head per embedding space (n + 1 = 3)
    neck=dict(type='MoCoV2Neck', in_channels=2048, hid_channels=2048, out_channels=128,
              with_avg_pool=True),
    num_augmentations=2,
    loss=dict(type='LooCLoss', temperature=0.2),
    queue_len=16384,
    feat_dim=128,
    momentum=0.001,  # mmengine's EMA convention: key encoder momentum 0.999
    representation='backbone')

# the left-out augmentations: colour (jitter + grayscale) and rotation by 0 / 90 / 180 / 270
color_augmentation = [
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4,
                          hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
rotation_augmentation = [dict(type='RandomRotation90', angles=(0, 90, 180, 270))]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LooCViews',
         # every view independently: MoCo v2's crop and flip before, its blur after
         base_pipeline=[
             dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.),
                  backend='pillow'),
             dict(type='RandomFlip', prob=0.5),
         ],
         augmentations=[color_augmentation, rotation_augmentation],
         post_pipeline=[
             dict(type='RandomApply',
                  transforms=[dict(type='GaussianBlur', magnitude_range=(0.1, 2.0),
                                   magnitude_std='inf', prob=1.)],
                  prob=0.5),
         ]),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=batch_size, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-4, nesterov=False))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
