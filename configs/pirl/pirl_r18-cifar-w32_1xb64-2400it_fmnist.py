# PIRL (jigsaw) on Fashion-MNIST with the small-image ResNet stem, sized for 2 CPU cores: a main-job
# candidate that measured worse than its own random init (configs/pirl/README.md).  pirl_r18-w32_1xb64-3000it_fmnist.py (same recipe, ImageNet stem) with
# mmpretrain's ResNet_CIFAR: a 3x3 stride-1 stem conv and no max-pool, so a 32 px image reaches the
# last stage at 4 x 4 rather than 1 x 1; the jigsaw patches shrink to 12 px and the schedule to
# 2400 iterations to pay for it, and the run trains in bfloat16 (tools/train.py --amp, as
# scripts/main.sh runs it) and channels_last.
# Why these sizes: configs/pirl/README.md, "Main job".
#   python tools/train.py configs/pirl/pirl_r18-cifar-w32_1xb64-2400it_fmnist.py --amp
_base_ = ['./pirl_r18-w32_1xb64-3000it_fmnist.py']

max_iters = 2400

model = dict(backbone=dict(type='ResNet_CIFAR'))

# NHWC: faster oneDNN convolutions on the CPU (SSLRunner converts the model and its inputs)
channels_last = True

patch_pipeline = {{_base_.patch_pipeline}}
transform_pipeline = [
    dict(type='JigsawPatches', grid=3, crop_size=48, crop_scale=(0.6, 1.0), patch_size=12,
         num_permutations=362880, permutation_seed=0, patch_pipeline=patch_pipeline),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PIRLViews', image_pipeline={{_base_.image_pipeline}},
         transform_pipeline=transform_pipeline),
    dict(type='PackInputs', algorithm_keys=['jigsaw_label']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters)
