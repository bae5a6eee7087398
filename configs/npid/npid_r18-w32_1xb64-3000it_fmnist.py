# NPID on Fashion-MNIST with PIRL's main-job budget (configs/_base_/pretext_fmnist.py):
# ResNet-18 at half width, 32 px, the first 10000 training images, batch 64, 3000 iterations,
# SGD lr 0.03 with 100 warm-up iterations then cosine.  As PIRL's Fashion-MNIST config: memory
# bank 10000 x 128 (mu 0.5), 4096 negatives shared by the batch (one matmul), InfoNCE at T=0.07
# (the binary NCE's one-off Z estimate blows up on a small, homogeneous data set: see
# configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py; model.loss.type=NCELoss selects it back),
# and the augmentation of PIRL's image view.  Results: configs/npid/README.md.
#   python tools/train.py configs/npid/npid_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./npid_r50_8xb32-200e_in1k.py', '../_base_/pretext_fmnist.py']

model = dict(
    backbone=_base_.fmnist_backbone,
    neck=dict(in_channels=256),
    memory_bank=dict(length=_base_.fmnist_num_train_images, num_negatives=4096,
                     sampling='shared'),
    loss=dict(type='InfoNCELoss', temperature=0.07))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.), backend='pillow'),
    *_base_.fmnist_color_jitter,
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
