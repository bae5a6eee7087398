# CMC with a split that learns on gray images: the L channel of two independently augmented
# crops, one encoder and bank each (configs/cmc/README.md); the rest as cmc_r18-w32_....
#   python tools/train.py configs/cmc/cmc-lcrops_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./cmc_r18-w32_1xb64-3000it_fmnist.py']

model = dict(
    data_preprocessor=dict(view_channels=[[0], [0]], view_inputs=[0, 1]),
    backbones=[dict(_base_.half_resnet50, **_base_.fmnist_backbone, in_channels=1),
               dict(_base_.half_resnet50, **_base_.fmnist_backbone, in_channels=1)])

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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
