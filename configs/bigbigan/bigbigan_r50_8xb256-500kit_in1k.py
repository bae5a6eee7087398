# BigBiGAN (Donahue & Simonyan, NeurIPS 2019), ImageNet, 8 GPUs x 256 = batch 2048: a ResNet-50
# encoder reading 256 px, a BigGAN-style generator and joint discriminator at 128 px, hinge loss,
# Adam for E+G and for D.  No official code exists: what follows the paper and what is our
# choice is listed in configs/bigbigan/README.md.
#   bash tools/dist_train.sh configs/bigbigan/bigbigan_r50_8xb256-500kit_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_iters = 500000  # D steps (iterations); E+G steps: max_iters / disc_steps
batch_size = 256  # per GPU
latent_dim = 120
encoder_size = 256  # the encoder reads higher-resolution images than G makes
gan_size = 128
ch = 64  # BigGAN's width multiplier of G and D
adam = dict(type='Adam', lr=2e-4, betas=(0.5, 0.999), weight_decay=0.)

model = dict(
    type='BigBiGAN',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    neck=dict(type='BigBiGANEncoderNeck', in_channels=2048, latent_dim=latent_dim,
              hid_channels=4096, num_layers=4, stochastic=True),
    generator=dict(type='BigBiGANGenerator', latent_dim=latent_dim, out_size=gan_size,
                   bottom_size=4, channels=[16 * ch, 8 * ch, 4 * ch, 2 * ch, ch],
                   spectral_norm=True, norm_cfg=dict(type='SyncBN')),
    discriminator=dict(type='BigBiGANDiscriminator', latent_dim=latent_dim,
                       channels=[ch, 2 * ch, 4 * ch, 8 * ch, 16 * ch, 16 * ch],
                       downsample=[True, True, True, True, True, False],
                       mlp_channels=1024, mlp_layers=8, spectral_norm=True),
    loss=dict(type='GANHingeLoss', weights=dict(x=1.0, z=1.0, xz=1.0)),
    disc_steps=2,
    gan_size=gan_size)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=encoder_size, edge='short', backend='pillow'),
    dict(type='RandomCrop', crop_size=encoder_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=batch_size, dataset=dict(pipeline=train_pipeline))

# one optimiser for E (backbone + neck) and G, one for D (mmssl_ext/engine/multi_optim.py)
optim_wrapper = dict(
    constructor='MultiOptimWrapperConstructor',
    type='OptimWrapper',  # for both (tools/train.py --amp replaces it)
    generator=dict(optimizer=adam, modules=['generator', 'backbone', 'neck']),
    discriminator=dict(optimizer=adam, modules=['discriminator']))
# one schedule per optimiser: constant learning rates
param_scheduler = dict(
    generator=[dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=max_iters)],
    discriminator=[dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0,
                        end=max_iters)])
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
# one DDP per network: each step all-reduces the gradients of the networks it trains
model_wrapper_cfg = dict(type='mmpretrain.MMSSLSeparateDistributedDataParallel',
                         broadcast_buffers=False, find_unused_parameters=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
custom_hooks = [dict(type='GANSamplesHook', interval=5000, num_samples=64, nrow=8)]
auto_scale_lr = dict(base_batch_size=2048)
