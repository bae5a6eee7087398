# Context Encoder on Fashion-MNIST with the shared pretext budget: half-width decoder, random
# blocks instead of the central hole, SGD; why: configs/inpainting/README.md.
#   python tools/train.py configs/inpainting/inpainting_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./inpainting_r50_8xb32-coslr-200e_in1k.py', '../_base_/pretext_fmnist.py']

fmnist_mean = 72.94  # mean grey of the Fashion-MNIST training images (0-255)
imagenet_mean = [123.675, 116.28, 103.53]
imagenet_std = [58.395, 57.12, 57.375]

model = dict(
    backbone=_base_.fmnist_backbone,
    head=dict(in_channels=256, channels=(256, 128, 64, 32, 32), feat_size=1,
              norm_cfg=dict(type='BN')),
    # the hole is filled with the Fashion-MNIST mean grey, in the ImageNet-normalised units
    fill_value=[round((fmnist_mean - m) / s, 4) for m, s in zip(imagenet_mean, imagenet_std)])

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    # centred garments: a central hole is a near-constant grey; random blocks also cut shapes
    dict(type='InpaintingMask', mode='random_blocks', target_fraction=0.25,
         block_ratio_range=(0.125, 0.375), max_blocks=32),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-4))
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)  # lr 0.03 is for batch 64
