# Jigsaw on ImageNet with VISSL's jigsaw_8gpu_resnet.yaml schedule and permutation set: 105
# epochs, lr / 10 at 30, 60, 90 and 100 (VISSL drops its warm-up on one node), 2000
# max-average-Hamming permutations; tiles and head as jigsaw_r50_8xb32-90e_in1k.py (README).
#   bash tools/dist_train.sh configs/jigsaw/jigsaw_r50_8xb32-105e_in1k.py 8
_base_ = ['./jigsaw_r50_8xb32-90e_in1k.py']

max_epochs = 105
num_permutations = 2000

model = dict(head=dict(num_classes=num_permutations))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='JigsawPatches', grid=3, crop_size=255, crop_scale=(0.6, 1.0), patch_size=64,
         num_permutations=num_permutations, permutation_seed=0,
         permutation_method='max_avg_hamming', patch_pipeline={{_base_.patch_pipeline}}),
    dict(type='PackInputs', input_key='patches', algorithm_keys=['jigsaw_label']),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90, 100], gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs)
