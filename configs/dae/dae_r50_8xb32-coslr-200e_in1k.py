# Denoising auto-encoder (Vincent et al., 2008 / 2010), ResNet-50 encoder, ImageNet, 8 GPUs x 32.
# The papers train one-layer encoders on MNIST-size inputs and give no ImageNet recipe: the
# corruption and loss follow their reference code (lisa-lab/DeepLearningTutorials code/dA.py:
# 30% masking noise, cross-entropy summed per image on [0, 1] inputs); data, batch and schedule
# are the Context Encoder's ImageNet config; the optimizer is pytorch/examples vae/main.py's
# (sources of every value: configs/dae/README.md).
#   bash tools/dist_train.sh configs/dae/dae_r50_8xb32-coslr-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 200
batch_size = 32  # per GPU
crop_size = 128  # the Context Encoder's input

model = dict(
    type='DenoisingAE',
    # [0, 1] inputs, as the reference code's (cross-entropy needs targets in [0, 1])
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[0., 0., 0.],
                           std=[255., 255., 255.], to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    # in_channels / feat_size / output_stride come from the backbone at input_size
    head=dict(type='AEDecoderHead', fc_channels=256, upsample='deconv',
              norm_cfg=dict(type='SyncBN')),
    loss=dict(type='AEReconstructionLoss', loss_type='bce', reduction='sum'),
    input_size=crop_size)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=350, edge='short', backend='pillow'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    # dA.py: each input value zeroed with probability corruption_level = 0.3
    dict(type='CorruptedPair',
         corruptions=[dict(type='MaskingNoise', prob=0.3, fill=0., per_channel=True)]),
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
