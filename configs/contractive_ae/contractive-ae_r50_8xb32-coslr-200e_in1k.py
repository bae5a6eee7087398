# Contractive auto-encoder (Rifai et al., 2011), ResNet-50 encoder, ImageNet, 8 GPUs x 32.
# The paper trains one-layer encoders on MNIST-size inputs and gives no ImageNet recipe: the code
# layer, loss and lambda follow its reference code (lisa-lab/DeepLearningTutorials code/cA.py:
# 500 sigmoid units, cross-entropy summed per image on [0, 1] inputs, contraction_level 0.1);
# the deep encoder's Jacobian is estimated by random projections (ContractivePenalty); data,
# batch and schedule are the Context Encoder's ImageNet config; the optimizer is
# pytorch/examples vae/main.py's (sources of every value: configs/contractive_ae/README.md).
#   bash tools/dist_train.sh configs/contractive_ae/contractive-ae_r50_8xb32-coslr-200e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 200
batch_size = 32  # per GPU
crop_size = 128  # the Context Encoder's input

model = dict(
    type='ContractiveAE',
    # [0, 1] inputs, as the reference code's (cross-entropy needs targets in [0, 1])
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[0., 0., 0.],
                           std=[255., 255., 255.], to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    code_layer=dict(type='AECodeLayer', code_dim=500, activation='sigmoid'),
    penalty=dict(type='ContractivePenalty', mode='input', num_projections=1, loss_weight=0.1),
    # in_channels / feat_size / output_stride come from the model at input_size
    head=dict(type='AEDecoderHead', fc_channels=256, upsample='deconv',
              norm_cfg=dict(type='SyncBN')),
    loss=dict(type='AEReconstructionLoss', loss_type='bce', reduction='sum'),
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
