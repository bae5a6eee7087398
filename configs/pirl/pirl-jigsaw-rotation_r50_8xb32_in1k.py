# PIRL with jigsaw + rotation combined: the image is rotated, then cut into jigsaw patches.
#   bash tools/dist_train.sh configs/pirl/pirl-jigsaw-rotation_r50_8xb32_in1k.py 8
_base_ = ['./pirl_r50_8xb32.py']
transform_pipeline = [
    dict(type='RandomRotation90'),
    dict(type='JigsawPatches', grid=3, crop_size=255, crop_scale=(0.6, 1.0), patch_size=64,
         num_permutations=362880, permutation_seed=0,
         patch_pipeline={{_base_.patch_pipeline}}),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PIRLViews', image_pipeline={{_base_.image_pipeline}},
         transform_pipeline=transform_pipeline),
    dict(type='PackInputs', algorithm_keys=['jigsaw_label', 'rot_label']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
