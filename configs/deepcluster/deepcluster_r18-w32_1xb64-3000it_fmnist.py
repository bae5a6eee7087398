# DeepCluster on Fashion-MNIST with the shared pretext budget: K = 100, re-clustering every epoch
# (156 iterations), no Sobel (the images are grey already); configs/deepcluster/README.md.
#   python tools/train.py configs/deepcluster/deepcluster_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./deepcluster_r50_8xb64-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    num_samples=_base_.fmnist_num_train_images,
    data_preprocessor=dict(type='SelfSupDataPreprocessor'),  # no Sobel: grey images
    backbone=dict(_base_.fmnist_backbone, in_channels=3),
    head=dict(num_classes=100, in_channels=256))  # K: 100 images per cluster (paper: 128)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
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
    # every epoch = 156 iterations; PCA to the 256-d feature size: whitening only
    dict(type='DeepClusterHook', pipeline=extract_pipeline, interval=1, pca_dim=256,
         whiten=True, l2_normalize=True, niter=20, seed=0, batch_size=256, num_workers=2),
]
optim_wrapper = _base_.fmnist_optim_wrapper
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
