# PIRL (jigsaw) on Fashion-MNIST, sized for 2 CPU cores: the main job of scripts/main.sh until
# 2026-12-05 (now PIRL with rotation, pirl-rotation_r18-w32_1xb64-6000it_fmnist.py).
# The ImageNet recipe (pirl_r50_8xb32.py) with half-width ResNet-18, 32 px images, 16 px patches
# and InfoNCE; why these sizes: configs/pirl/README.md, "Recipe notes".
#   python tools/train.py configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./pirl_r50_8xb32.py', '../_base_/datasets/fmnist_knn.py']

# a bank's m_I needs several visits per image: pre-train on the first 10k images (~19 epochs)
num_train_images = 10000
batch_size = 64
max_iters = 3000

model = dict(
    backbone=dict(depth=18, stem_channels=32, base_channels=32, norm_cfg=dict(type='BN')),
    neck=dict(in_channels=256),
    transform_neck=dict(in_channels=256),
    # one set of negatives for the batch and both loss terms (VISSL: per sample and per term);
    # BN running statistics from the image views only: README, "Recipe notes"
    memory_bank=dict(length=num_train_images, num_negatives=4096, sampling='shared'),
    shared_negatives=True,
    transformed_bn_stats=False,
    # InfoNCE: NCE's normaliser Z, estimated once from a random bank, breaks on small data
    loss=dict(type='InfoNCELoss', temperature=0.07))

# gray images: saturation, hue and grayscale are no-ops, so only brightness / contrast jitter
patch_pipeline = [
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4)],
         prob=0.8),
]
image_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
    *patch_pipeline,
    dict(type='RandomFlip', prob=0.5),
]
transform_pipeline = [
    dict(type='JigsawPatches', grid=3, crop_size=63, crop_scale=(0.6, 1.0), patch_size=16,
         num_permutations=362880, permutation_seed=0, patch_pipeline=patch_pipeline),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PIRLViews', image_pipeline=image_pipeline,
         transform_pipeline=transform_pipeline),
    dict(type='PackInputs', algorithm_keys=['jigsaw_label']),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    dataset=dict(
        indices=num_train_images,
        data_root={{_base_.fmnist_data_root}},
        metainfo={{_base_.fmnist_metainfo}},
        pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=0.03))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(by_epoch=False, interval=1000, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=64)
