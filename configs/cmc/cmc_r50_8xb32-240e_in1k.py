# CMC (Tian, Krishnan & Isola, "Contrastive Multiview Coding", 2019), L / ab views, ImageNet,
# 8 GPUs x 32: the reference code's ResNet-50 recipe (HobbitLong/CMC train_CMC.py, --model
# resnet50v1); its values and our choices: configs/cmc/README.md.
#   bash tools/dist_train.sh configs/cmc/cmc_r50_8xb32-240e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_train_images = 1281167  # ImageNet-1k train; each memory bank holds one vector per image
max_epochs = 240
batch_size = 32  # per GPU

# the paper's "two halves": a 64-channel stem, then ResNet-50's stages at half width (1024-d);
# BN per GPU over 32 images, as the reference's DataParallel on 4 GPUs x 32
half_resnet50 = dict(type='ResNet', depth=50, stem_channels=64, base_channels=32,
                     norm_cfg=dict(type='BN'), zero_init_residual=False)
model = dict(
    type='CMC',
    data_preprocessor=dict(type='CMCDataPreprocessor', view_channels=[[0], [1, 2]],
                           to_rgb=True),
    backbones=[dict(half_resnet50, in_channels=1),   # view 0: L  (model.backbone)
               dict(half_resnet50, in_channels=2)],  # view 1: ab
    neck=dict(type='LinearNeck', in_channels=1024, out_channels=128, gap_dim=2,
              norm_cfg=None),
    # K negatives drawn per sample, the same indices for both banks, as the reference
    memory_bank=dict(type='MemoryBank', length=num_train_images, feat_dim=128, momentum=0.5,
                     num_negatives=16384, sampling='per_sample'),
    loss=dict(type='InfoNCELoss', temperature=0.07),  # the reference's --softmax; or NCELoss
    objective='core',
    core_view=0)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # the reference's crop_low for ResNets on ImageNet (0.2 is for AlexNet)
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

# lr 0.03 for the reference's batch of 128, scaled linearly to 8 x 32
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03 * batch_size * 8 / 128, momentum=0.9,
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[120, 160, 200], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
