# Semi-supervised fine-tune on 1 % of the Fashion-MNIST labels (60 per class, meta/train_1pct.txt),
# the PIRL / BYOL protocol: the whole network fine-tuned, the head at 10x the learning rate.
#   python tools/train.py configs/transfer/semi-1pct_r18-w32_1xb64-100e_fmnist.py \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/EXP/iter_3000.pth
_base_ = ['./finetune_r18-w32_1xb64-20e_fmnist.py']

train_dataloader = dict(dataset=dict(ann_file='meta/train_1pct.txt'))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10)}))
max_epochs = 100
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[60, 80], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=20)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(type='CheckpointHook', interval=20, max_keep_ckpts=1, save_best=None))
