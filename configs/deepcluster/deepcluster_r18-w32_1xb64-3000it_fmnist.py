# DeepCluster on Fashion-MNIST with the shared budget (configs/_base_/pretext_fmnist.py):
# ResNet-18 at half width, 32 px, the first 10000 training images, batch 64, 3000 iterations.
# Re-clustering needs epochs: 10000 / 64 = 156 iterations per epoch (drop_last), so the hook
# re-clusters every 156 iterations (19 clusterings + the initial one), with K = 100 clusters
# (100 images per cluster on average; the paper's ImageNet ratio is 128).  PCA to 256 = the
# feature dimension of this backbone, i.e. whitening only.  No Sobel filter: the images are grey
# already (the colour shortcut Sobel removes does not exist), and the input stays the same as
# for the other methods' kNN comparison.  Results next to random init: configs/deepcluster/README.md
#   python tools/train.py configs/deepcluster/deepcluster_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./deepcluster_r50_8xb64-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    num_samples=_base_.fmnist_num_train_images,
    data_preprocessor=dict(type='SelfSupDataPreprocessor'),
    backbone=dict(_base_.fmnist_backbone, in_channels=3),
    head=dict(num_classes=100, in_channels=256))

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
