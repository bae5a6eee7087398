# PCL v2 on Fashion-MNIST with the shared pretext budget: MoCo v2's Fashion-MNIST views (no
# blur), a 4096 queue, prototypes K = 100 / 200 / 400 from the third epoch (312 iterations),
# all other prototypes as negatives; configs/pcl/README.md.
#   python tools/train.py configs/pcl/pcl-v2_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./pcl-v2_r50_8xb32-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    num_samples=_base_.fmnist_num_train_images,
    num_clusters=[100, 200, 400],
    num_negative_prototypes=None,
    queue_len=4096,
    backbone=_base_.fmnist_backbone,
    neck=dict(in_channels=256, hid_channels=256, out_channels=128))

view_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
    *_base_.fmnist_color_jitter,
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
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
    dict(type='PCLHook', pipeline=extract_pipeline, warmup_epochs=2, interval=1, niter=20,
         nredo=1, max_points_per_centroid=None, seed=0, batch_size=256, num_workers=2),
]
optim_wrapper = _base_.fmnist_optim_wrapper
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
