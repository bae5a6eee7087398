# BigBiGAN on Fashion-MNIST with the shared pretext budget: the ResNet-18 (half width) encoder at
# 32 px, a small generator and discriminator at 32 px, the ImageNet recipe's optimisers; why:
# configs/bigbigan/README.md.
#   python tools/train.py configs/bigbigan/bigbigan_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./bigbigan_r50_8xb256-500kit_in1k.py', '../_base_/pretext_fmnist.py']

latent_dim = 64
model = dict(
    backbone=_base_.fmnist_backbone,
    neck=dict(in_channels=256, latent_dim=latent_dim, hid_channels=256, num_layers=2),
    generator=dict(latent_dim=latent_dim, out_size=32, channels=[128, 64, 32],
                   norm_cfg=dict(type='BN')),
    discriminator=dict(latent_dim=latent_dim, channels=[32, 32, 64, 64],
                       downsample=[True, True, True, False], mlp_channels=256, mlp_layers=4),
    gan_size=None)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.5, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
# the shared budget's warm-up + cosine schedule, for each optimiser
param_scheduler = dict(generator=_base_.fmnist_param_scheduler,
                       discriminator=_base_.fmnist_param_scheduler)
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
custom_hooks = [dict(type='GANSamplesHook', interval=500, num_samples=64, nrow=8)]
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)  # Adam 2e-4 for batch 64
