# Colorization on Fashion-MNIST, sized like the other Fashion-MNIST configs (ResNet-18 at half
# width, 32 px, 10000 training images, batch 64, 3000 iterations on 2 CPU cores).
#   python tools/train.py configs/colorization/colorization_r18-w32_1xb64-3000it_fmnist.py
# CAVEAT: Fashion-MNIST is grayscale.  Every pixel has a = b = 0, so every target is the
# neutral bin and the pretext task is trivial: the head reaches the minimum loss (the entropy
# of the fixed soft target) from its bias alone, and the backbone gets almost no learning
# signal.  This config exists so that the method
# builds, trains and is evaluated by the same tools as the others (its kNN accuracy is a
# "learns nothing useful" control, to be compared with a random backbone); it says nothing
# about Colorization on colour images.  See configs/colorization/README.md.
# The ImageNet recipe is colorization_r50_8xb32-coslr-200e_in1k.py; this file only changes
# sizes, data and schedule.  kNN: tools/knn_eval.py CONFIG CKPT (the data preprocessor turns
# the kNN images into the normalised L channel the backbone was trained on).
_base_ = ['./colorization_r50_8xb32-coslr-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    backbone=_base_.fmnist_backbone,
    head=dict(in_channels=(64, 128, 256), channels=64, norm_cfg=dict(type='BN')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
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
