# DINO with a tiny ViT (128 dims, 4 layers, 4 px patches) on Fashion-MNIST: the data and budget of
# dino_r18-w32_1xb64-3000it_fmnist.py, the ViT recipe's optimiser; tau_t 0.04 (README).
#   python tools/train.py configs/dino/dino_vit-tiny-p4_1xb64-3000it_fmnist.py
_base_ = ['./dino_vit-small-p16_8xb64-100e_in1k.py', '../_base_/pretext_fmnist.py']

out_channels = 4096
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=128, num_layers=4, num_heads=4,
                            feedforward_channels=512),
                  img_size=32, patch_size=4),
    head=dict(in_channels=128, hidden_channels=1024, bottleneck_channels=256,
              out_channels=out_channels),
    loss=dict(out_channels=out_channels, teacher_temp=0.04, warmup_teacher_temp=0.04,
              warmup_iters=0),
    freeze_last_layer_iters=10000 // 64)

global_crop = dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.4, 1.),
                   interpolation='bicubic', backend='pillow')
local_crop = dict(type='RandomResizedCrop', scale=16, crop_ratio_range=(0.05, 0.4),
                  interpolation='bicubic', backend='pillow')
flip = dict(type='RandomFlip', prob=0.5)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1, 6],
         transforms=[
             [global_crop, flip, *_base_.fmnist_color_jitter],
             [global_crop, flip, *_base_.fmnist_color_jitter,
              dict(type='Solarize', thr=128, prob=0.2)],
             [local_crop, flip, *_base_.fmnist_color_jitter],
         ]),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    *_base_.fmnist_param_scheduler,
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay', eta_min_ratio=10.0,
         T_max=_base_.fmnist_max_iters, by_epoch=False, begin=0, end=_base_.fmnist_max_iters),
]
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
