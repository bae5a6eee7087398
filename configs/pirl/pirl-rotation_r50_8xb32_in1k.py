# PIRL with rotation as the transform: the image rotated by 0/90/180/270 degrees, linear g; the
# rotated view gets the jigsaw recipe's per-view augmentation (VISSL ships no rotation config).
#   bash tools/dist_train.sh configs/pirl/pirl-rotation_r50_8xb32_in1k.py 8
_base_ = ['./pirl_r50_8xb32.py']
model = dict(transform_neck=dict(_delete_=True, type='LinearNeck', in_channels=2048,
                                 out_channels=128, gap_dim=2,
                                 norm_cfg=None))
transform_pipeline = [
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomRotation90'),
    *_base_.patch_pipeline,
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PIRLViews', image_pipeline={{_base_.image_pipeline}},
         transform_pipeline=transform_pipeline),
    dict(type='PackInputs', algorithm_keys=['rot_label']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
