# PIRL with rotation as the transform: the image rotated by 0/90/180/270 degrees, linear g.
#   bash tools/dist_train.sh configs/pirl/pirl-rotation_r50_8xb32_in1k.py 8
_base_ = ['./pirl_r50_8xb32.py']
model = dict(transform_neck=dict(_delete_=True, type='LinearNeck', in_channels=2048,
                                 out_channels=128, gap_dim=2,
                                 norm_cfg=None))
transform_pipeline = [
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomRotation90'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4,
                          hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PIRLViews', image_pipeline={{_base_.image_pipeline}},
         transform_pipeline=transform_pipeline),
    dict(type='PackInputs', algorithm_keys=['rot_label']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
