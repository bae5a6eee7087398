# Jigsaw puzzles (Noroozi & Favaro, ECCV 2016), ResNet-50 on ImageNet, 8 GPUs x 32: PIRL's tiles
# and backbone, the permutation classified among the paper's 1000 max-average-Hamming permutations;
# our 90-epoch schedule (VISSL's 105-epoch recipe: jigsaw_r50_8xb32-105e_in1k.py; README).
#   bash tools/dist_train.sh configs/jigsaw/jigsaw_r50_8xb32-90e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 90
batch_size = 32  # per GPU
num_permutations = 1000  # the paper's best set size; VISSL's configs use 2000

model = dict(
    type='JigsawPuzzle',
    normalize_patches=True,  # each tile to zero mean / unit variance
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
         permutation_method='max_avg_hamming', patch_pipeline=patch_pipeline),
    dict(type='PackInputs', input_key='patches', algorithm_keys=['jigsaw_label']),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

# VISSL's jigsaw optimizer: no weight decay on BatchNorm (regularize_bn: False), biases decayed
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1 * batch_size * 8 / 256, momentum=0.9,
                   weight_decay=1e-4, nesterov=False),
    paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60, 80], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
