# Exemplar-CNN on Fashion-MNIST with the shared pretext budget: 2000 seed images (the first 2000
# of the training set), so that the 3000 x 64 samples of the budget give each surrogate class
# about 100 augmented samples, the number beyond which the paper's accuracy stops improving;
# configs/exemplar_cnn/README.md.
#   python tools/train.py configs/exemplar_cnn/exemplar-cnn_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./exemplar-cnn_r50_8xb32-300e_in1k.py', '../_base_/pretext_fmnist.py']

num_exemplars = 2000

model = dict(backbone=_base_.fmnist_backbone,
             head=dict(in_channels=256, num_classes=num_exemplars))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.5, 1.),
         aspect_ratio_range=(1., 1.), backend='pillow'),
    # black background of the Fashion-MNIST images
    dict(type='Rotate', magnitude_range=(0, 20), magnitude_std='inf', prob=1.0,
         random_negative_prob=0.5, interpolation='bilinear', pad_val=0),
    # gray images: saturation and hue are no-ops
    dict(type='ColorJitter', brightness=0.4, contrast=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(_base_.fmnist_train_dataloader,
                        dataset=dict(_base_.fmnist_dataset, indices=num_exemplars,
                                     pipeline=train_pipeline))
optim_wrapper = _base_.fmnist_optim_wrapper
param_scheduler = _base_.fmnist_param_scheduler
train_cfg = _base_.fmnist_train_cfg
default_hooks = _base_.fmnist_default_hooks
log_processor = _base_.fmnist_log_processor
randomness = _base_.fmnist_randomness
auto_scale_lr = dict(base_batch_size=_base_.fmnist_batch_size)
