# Jigsaw puzzles (Noroozi & Favaro, ECCV 2016), ResNet-50 on ImageNet, 8 GPUs x 32: the
# covariant twin of PIRL (configs/pirl/pirl_r50_8xb32.py) with the SAME patches (255 px crop,
# scale 0.6-1, 3x3 grid, 64 px jittered tiles, colour jitter and grayscale per tile), the same
# backbone, and the permutation classified instead of being made invariant to.
# Permutation set: 1000 permutations chosen greedily for maximal minimum Hamming distance (the
# paper's best; Goyal et al. 2019 scaled it to 2000 for ResNet-50: set num_permutations and
# head.num_classes together).  Each tile is normalised on its own (JigsawPuzzle's
# normalize_patches).  Head: per-tile 2048->1024 (fc6), concatenation of 9, 4096 (fc7), 1000 (fc8).
# Schedule as Goyal et al.: SGD lr 0.1 for 256 images, momentum 0.9, wd 1e-4, 90 epochs, /10 at
# 30, 60, 80.
#   bash tools/dist_train.sh configs/jigsaw/jigsaw_r50_8xb32-90e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 90
batch_size = 32  # per GPU
num_permutations = 1000

model = dict(
    type='JigsawPuzzle',
    normalize_patches=True,
    data_preprocessor=dict(
        type='PatchViewDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    head=dict(type='PretextClsHead', in_channels=2048, num_classes=num_permutations,
              num_inputs=9, input_channels=1024, hidden_channels=4096, dropout=0.5))

patch_pipeline = [
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4,
                          hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='JigsawPatches', grid=3, crop_size=255, crop_scale=(0.6, 1.0), patch_size=64,
         num_permutations=num_permutations, permutation_seed=0,
         permutation_method='max_hamming', patch_pipeline=patch_pipeline),
    dict(type='PackInputs', input_key='patches', algorithm_keys=['jigsaw_label']),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1 * batch_size * 8 / 256, momentum=0.9,
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60, 80], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
