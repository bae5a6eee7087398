# Context Encoder on Fashion-MNIST with PIRL's main-job budget (configs/_base_/pretext_fmnist.py):
# ResNet-18 at half width (last stage 256 channels), 32 px, the first 10k training images,
# 3000 iterations x 64, SGD lr 0.03 with warm-up + cosine.  The ImageNet recipe is
# inpainting_r50_8xb32-coslr-200e_in1k.py; this file changes sizes, data and schedule:
# * decoder at half width (256-128-64-32-32) from the 1 x 1 feature map of a 32 px input
#   (feat_size 1: the channel-wise FC is then a per-channel affine map), BN instead of SyncBN;
# * random blocks instead of the central hole: Fashion-MNIST garments are centred, so a central
#   16 x 16 hole always falls inside the garment, where the answer is nearly its mean grey and
#   the context needed is only the hole's border; randomly placed 4-12 px blocks covering 1/4
#   of the image also hit silhouettes, sleeves, soles and background, so the encoder has to model
#   the garment's shape (the paper also found the central hole's fixed boundary a shortcut);
# * the hole is filled with the Fashion-MNIST mean grey (72.94 on 0-255), i.e. fill_value =
#   (72.94 - ImageNet mean) / ImageNet std per RGB channel; the preprocessor keeps the ImageNet
#   statistics every Fashion-MNIST config (kNN, linear probe, fine-tuning) uses;
# * crops as the other pretext methods (random resized crop, scale 0.2-1) and flip; no colour
#   jitter (the paper uses none for inpainting, and the target is the image itself);
# * SGD instead of the paper's Adam, as every method of the shared Fashion-MNIST budget.
#   python tools/train.py configs/inpainting/inpainting_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./inpainting_r50_8xb32-coslr-200e_in1k.py', '../_base_/pretext_fmnist.py']

fmnist_mean = 72.94  # mean grey of the Fashion-MNIST training images (0-255)
imagenet_mean = [123.675, 116.28, 103.53]
imagenet_std = [58.395, 57.12, 57.375]

model = dict(
    backbone=_base_.fmnist_backbone,
    head=dict(in_channels=256, channels=(256, 128, 64, 32, 32), feat_size=1,
              norm_cfg=dict(type='BN')),
    fill_value=[round((fmnist_mean - m) / s, 4) for m, s in zip(imagenet_mean, imagenet_std)])

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
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
auto_scale_lr = dict(base_batch_size=_base_.batch_size)
