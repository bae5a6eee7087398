# Semi-supervised fine-tune on 10 % of the Fashion-MNIST labels (600 per class, containing the
# 1 % subset); the recipe of semi-1pct_r18-w32_1xb64-100e_fmnist.py, fewer epochs.
_base_ = ['./semi-1pct_r18-w32_1xb64-100e_fmnist.py']

train_dataloader = dict(dataset=dict(ann_file='meta/train_10pct.txt'))
max_epochs = 20
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[12, 16], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=4)
default_hooks = dict(checkpoint=dict(interval=4))
