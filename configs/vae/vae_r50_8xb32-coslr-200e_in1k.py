# Variational auto-encoder (Kingma & Welling, 2014), ResNet-50 encoder, ImageNet, 8 GPUs x 32.
# The paper trains MLPs on MNIST / Frey Face and gives no ImageNet recipe: latent size,
# likelihood and optimizer follow pytorch/examples vae/main.py (20 latents, Bernoulli likelihood
# on [0, 1] images summed per image, the closed-form KL, Adam lr 1e-3); data, batch and schedule
# are the Context Encoder's ImageNet config (sources of every value: configs/vae/README.md).
#   bash tools/dist_train.sh configs/vae/vae_r50_8xb32-coslr-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 200
batch_size = 32  # per GPU
crop_size = 128  # the Context Encoder's input

model = dict(
    type='VariationalAE',
    # [0, 1] inputs: the Bernoulli likelihood needs targets in [0, 1]
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[0., 0., 0.],
                           std=[255., 255., 255.], to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    posterior=dict(type='AEGaussianPosterior', latent_dim=20),
    # in_channels / feat_size / output_stride come from the model at input_size
    head=dict(type='AEDecoderHead', fc_channels=256, upsample='deconv',
              norm_cfg=dict(type='SyncBN')),
    loss=dict(type='ELBOLoss', likelihood='bernoulli'),
    kl_weight=1.0,
    kl_warmup_iters=0,  # the plain ELBO; KL annealing is an option
    representation='backbone',
    input_size=crop_size)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=350, edge='short', backend='pillow'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=batch_size, dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
