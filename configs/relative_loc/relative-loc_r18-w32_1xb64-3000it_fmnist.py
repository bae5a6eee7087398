# Relative patch location on Fashion-MNIST with the shared pretext budget: 16 px patches (PIRL's
# tile size), 4 px gap, 2 px jitter; configs/relative_loc/README.md.
#   python tools/train.py configs/relative_loc/relative-loc_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./relative-loc_r50_8xb32-70e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    backbone=_base_.fmnist_backbone,
    head=dict(in_channels=256, input_channels=128, hidden_channels=512))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RelativeLocationPatches', patch_size=16, gap=4, jitter=2, crop_scale=(0.6, 1.0),
         patch_pipeline=_base_.fmnist_color_jitter),
    dict(type='PackInputs', input_key='patches', algorithm_keys=['rel_loc_label']),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
# the shared budget's plain SGD, without the ImageNet recipe's 5x head weight decay
optim_wrapper = dict(_base_.fmnist_optim_wrapper, paramwise_cfg=None)
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
