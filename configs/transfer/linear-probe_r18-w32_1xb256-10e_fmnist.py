# Linear probe on Fashion-MNIST: mmpretrain's linear-evaluation recipe (frozen backbone, linear
# head on pooled res5 features) at 32 px on our ResNet-18 width 32, lr 0.1 (README: not 30).
#   python tools/train.py configs/transfer/linear-probe_r18-w32_1xb256-10e_fmnist.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/EXP/iter_3000.pth
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
