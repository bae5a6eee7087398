# Context prediction / relative patch location (Doersch, Gupta & Efros, ICCV 2015), ResNet-50,
# ImageNet, 8 GPUs x 32 pairs: the paper's patch geometry, mmselfsup's ResNet-50 schedule
# (relative-loc_resnet50_8xb64-steplr-70e_in1k.py); both and our choices: configs/relative_loc/.
#   bash tools/dist_train.sh configs/relative_loc/relative-loc_r50_8xb32-70e_in1k.py 8
_base_ = ['../_base_/pretrain_in1k.py']

max_epochs = 70
batch_size = 32  # pairs per GPU

model = dict(
    type='RelativeLocation',
    data_preprocessor=dict(
        type='PatchViewDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    head=dict(type='PretextClsHead', in_channels=2048, num_classes=8, num_inputs=2,
              input_channels=1024, hidden_channels=4096, dropout=0.5))

patch_pipeline = [
    # against chromatic aberration: colour dropped per pair member
    dict(type='RandomGrayscale', prob=0.5, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # a 398 px crop (3 x 96 + 2 x 48 + 2 x 7) holds the jittered lattice
    dict(type='RelativeLocationPatches', patch_size=96, gap=48, jitter=7,
         crop_scale=(0.6, 1.0), patch_pipeline=patch_pipeline),
    dict(type='PackInputs', input_key='patches', algorithm_keys=['rel_loc_label']),
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(pipeline=train_pipeline))

# mmselfsup's: lr 0.2 for 512 pairs, 5x the weight decay on the layers after the backbone
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1 * batch_size * 8 / 256, momentum=0.9,
                   weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'head': dict(decay_mult=5.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='MultiStepLR', by_epoch=True, milestones=[30, 50], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
