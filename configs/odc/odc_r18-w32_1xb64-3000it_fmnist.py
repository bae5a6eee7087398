# ODC on Fashion-MNIST with the shared pretext budget: K = 100 clusters, neck 256 -> 512 -> 256;
# results next to random init: configs/odc/README.md.
#   python tools/train.py configs/odc/odc_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./odc_r50_8xb64-440e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    backbone=_base_.fmnist_backbone,
    neck=dict(in_channels=256, norm_cfg=dict(type='BN1d')),
    head=dict(num_classes=100),  # K: 100 images per cluster (ImageNet: 128)
    memory_bank=dict(length=_base_.fmnist_num_train_images, num_classes=100))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    *_base_.fmnist_color_jitter,
    dict(type='PackInputs'),
]
extract_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, pipeline=train_pipeline))
custom_hooks = [
    dict(type='ODCHook', pipeline=extract_pipeline, niter=20, seed=0, pca_dim=None,
         small_cluster_interval=1, batch_size=256, num_workers=2),
]
optim_wrapper = _base_.fmnist_optim_wrapper
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
