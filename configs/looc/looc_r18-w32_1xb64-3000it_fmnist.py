# LooC on Fashion-MNIST with the shared pretext budget: the ImageNet config's model at the shared
# ResNet-18 half width, queue 4096 (as the MoCo v2 Fashion-MNIST config), the leave-one-out
# augmentations colour (brightness / contrast: the images are gray) and 90-degree rotation;
# configs/looc/README.md.
#   python tools/train.py configs/looc/looc_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./looc_r50_8xb32-500e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(backbone=_base_.fmnist_backbone,
             neck=dict(in_channels=256, hid_channels=256),
             queue_len=4096)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LooCViews',
         base_pipeline=[
             dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.),
                  backend='pillow'),
             dict(type='RandomFlip', prob=0.5),
         ],
         augmentations=[_base_.fmnist_color_jitter,
                        [dict(type='RandomRotation90', angles=(0, 90, 180, 270))]]),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
optim_wrapper = _base_.fmnist_optim_wrapper
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
