# Linear probe on Fashion-MNIST: mmpretrain's own linear-evaluation recipe (frozen backbone,
# `frozen_stages=4`, linear head, SGD lr 30), with the backbone of our Fashion-MNIST PIRL config
# (ResNet-18 at half width) at 32 px.  Point it at any checkpoint of ours:
#   python tools/train.py configs/benchmarks/linear-probe_r18-w32_1xb256-10e_fmnist.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/EXP/iter_900.pth
# (a backbone-only file from tools/extract_backbone.py works too, with
#  model.backbone.init_cfg.prefix=None)
_base_ = [
    'mmpretrain::mocov2/benchmarks/resnet50_8xb32-linear-steplr-100e_in1k.py',
    '../_base_/datasets/fmnist_png.py',
]
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

max_epochs = 10
model = dict(
    backbone=dict(depth=18, stem_channels=32, base_channels=32),
    head=dict(in_channels=256, num_classes=10, topk=(1, 5)))
data_preprocessor = dict(num_classes=10)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.6, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256, num_workers=2,
    dataset=dict(data_root={{_base_.fmnist_data_root}}, metainfo={{_base_.fmnist_metainfo}},
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256, num_workers=2,
    dataset=dict(data_root={{_base_.fmnist_data_root}}, metainfo={{_base_.fmnist_metainfo}},
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[6, 8], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1))
