# A rotation-prediction N_pre for ClusterFit: the fit recipe as a 4-way classifier of one random
# 0/90/180/270 rotation per image (configs/clusterfit/README.md).
#   python tools/train.py configs/clusterfit/rotation_r18-w32_1xb64-3000it_fmnist.py
_base_ = ['./clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py']

num_classes = 4
model = dict(
    data_preprocessor=dict(num_classes=num_classes),
    head=dict(num_classes=num_classes, topk=(1, )))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.35, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # rotate, and make the index of the drawn angle the classification target
    dict(type='KeyMapper', transforms=[dict(type='RandomRotation90')],
         mapping=dict(img='img'), remapping=dict(img='img', rot_label='gt_label')),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(ann_file='meta/train.txt', pipeline=train_pipeline))
