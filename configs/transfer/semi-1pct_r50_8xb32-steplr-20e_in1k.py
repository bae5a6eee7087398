# ImageNet semi-supervised fine-tune on 1 % of the labels (the PIRL / BYOL tables), the head at 10x
# the learning rate; make the subsets first (tools/make_semi_subset.py, configs/transfer/README.md).
#   bash tools/dist_train.sh configs/transfer/semi-1pct_r50_8xb32-steplr-20e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/pirl_r50_8xb32/epoch_200.pth
_base_ = ['./finetune_r50_8xb32-steplr-100e_in1k.py']

train_dataloader = dict(dataset=dict(ann_file='meta/train_1pct.txt'))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10)}))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[12, 16], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=2)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=2))
