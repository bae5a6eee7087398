# Linear probe on Fashion-MNIST: mmpretrain's linear-evaluation recipe (frozen backbone,
# `frozen_stages=4`, linear head on globally pooled res5 features, SGD without weight decay, step
# schedule, as in mmpretrain::mocov2/benchmarks/resnet50_8xb32-linear-steplr-100e_in1k.py) on the
# ResNet-18 width-32 backbone of our Fashion-MNIST pre-training configs, at 32 px.  The learning
# rate is 0.1, not the R50 recipe's 30: with lr 30 this probe diverges on the main-job PIRL
# checkpoint (top-1 / top-5 72.2 / 74.9 after one epoch, against 76.5 / 99.1 with lr 0.1).  Point it at any checkpoint
# of ours:
#   python tools/train.py configs/transfer/linear-probe_r18-w32_1xb256-10e_fmnist.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/EXP/iter_3000.pth
# (a backbone-only file from tools/extract_backbone.py works too, with
#  model.backbone.init_cfg.prefix=None).  A checkpoint that does not fit is an error.
_base_ = [
    '../_base_/models/resnet18-w32_fmnist-cls.py',
    '../_base_/datasets/fmnist_cls.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/transfer/pretrained_check.py',
]

model = dict(backbone=dict(frozen_stages=4))
train_dataloader = dict(batch_size=256)

optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[6, 8], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
