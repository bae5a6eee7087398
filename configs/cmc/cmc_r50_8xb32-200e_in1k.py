# CMC (Tian, Krishnan & Isola, "Contrastive Multiview Coding", 2019), Lab views, ImageNet,
# 8 GPUs x 32.  Two views of each 224 px crop: the lightness L (1 channel) and the colour ab
# (2 channels), CIE Lab normalised as CMC's code does (CMCDataPreprocessor).  One encoder per
# view, each a ResNet-50 at half width (stem and base channels 32: 1024-d output; the paper's
# "two halves" whose concatenation has ResNet-50's 2048 channels), a linear projection to 128,
# L2-normalised; one memory bank per view (1.28M x 128, momentum 0.5) with 16384 negatives;
# softmax InfoNCE at T = 0.07 (the reference code's --softmax, recommended for ResNets).
# Objective: core view = full graph with two views (set objective='full' for M > 2 views).
# Data: random resized crop (scale 0.2-1) + flip, no colour augmentation (colour is a view).
# Schedule: SGD lr 0.03 per 256 images, momentum 0.9, wd 1e-4, lr x0.1 at epochs 120 and 160
# (the reference code trains 240 epochs with steps at 120/160/200; 200 here, as PIRL's config).
# Transfer / kNN: model.backbone is the L encoder (1 input channel); the preprocessor's test mode
# feeds it L.  tools/extract_backbone.py --in-channels 3 replicates its first conv for RGB.
#   bash tools/dist_train.sh configs/cmc/cmc_r50_8xb32-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

num_train_images = 1281167  # ImageNet-1k train; each memory bank holds one vector per image
max_epochs = 200
batch_size = 32  # per GPU

half_resnet50 = dict(type='ResNet', depth=50, stem_channels=32, base_channels=32,
                     norm_cfg=dict(type='SyncBN'), zero_init_residual=False)
model = dict(
    type='CMC',
    data_preprocessor=dict(type='CMCDataPreprocessor', view_channels=[[0], [1, 2]],
                           to_rgb=True),
    backbones=[dict(half_resnet50, in_channels=1),   # view 0: L  (model.backbone)
               dict(half_resnet50, in_channels=2)],  # view 1: ab
    neck=dict(type='LinearNeck', in_channels=1024, out_channels=128, gap_dim=2,
              norm_cfg=None),
    memory_bank=dict(type='MemoryBank', length=num_train_images, feat_dim=128, momentum=0.5,
                     num_negatives=16384, sampling='shared'),
    loss=dict(type='InfoNCELoss', temperature=0.07),  # or dict(type='NCELoss', ...)
    objective='core',
    core_view=0)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.03 * batch_size * 8 / 256, momentum=0.9,
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[120, 160], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
