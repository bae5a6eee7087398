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
_base_ = ['./colorization_r50_8xb32-coslr-200e_in1k.py', '../_base_/datasets/fmnist_knn.py']

num_train_images = 10000
batch_size = 64
max_iters = 3000

model = dict(
    backbone=dict(depth=18, stem_channels=32, base_channels=32, norm_cfg=dict(type='BN')),
    head=dict(in_channels=(64, 128, 256), channels=64, norm_cfg=dict(type='BN')))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    dataset=dict(
        indices=num_train_images,
        data_root={{_base_.fmnist_data_root}},
        metainfo={{_base_.fmnist_metainfo}},
        pipeline=train_pipeline))

optim_wrapper = dict(optimizer=dict(lr=0.03))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(by_epoch=False, interval=1000, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=64)
