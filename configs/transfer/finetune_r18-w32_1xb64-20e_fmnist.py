# Full fine-tune on Fashion-MNIST with a linear head: every layer of our pretrained ResNet-18
# width 32 trains (BN statistics included), SGD with momentum, step schedule.
#   python tools/train.py configs/transfer/finetune_r18-w32_1xb64-20e_fmnist.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/EXP/iter_3000.pth
_base_ = [
    '../_base_/models/resnet18-w32_fmnist-cls.py',
    '../_base_/datasets/fmnist_cls.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/transfer/pretrained_check.py',
]

model = dict(backbone=dict(frozen_stages=-1, norm_eval=False))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='MultiStepLR', by_epoch=True, milestones=[12, 16], gamma=0.1),
]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=2)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=1,
                                     save_best='auto'))
