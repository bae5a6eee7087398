# ClusterFit fit step on ImageNet-1k as the paper (Yan et al. CVPR 2020) and VISSL: ResNet-50 from
# scratch on K=16000 cluster ids, 105 epochs; the cluster step first (configs/clusterfit/README.md).
#   bash tools/dist_train.sh configs/clusterfit/clusterfit-fit_r50_8xb32-105e_in1k.py 8
_base_ = [
    'mmpretrain::_base_/models/resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/default_runtime.py',  # our runtime (exact resume, guards)
]
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

num_clusters = 16000
max_epochs = 105

model = dict(head=dict(num_classes=num_clusters, topk=(1, )))
data_preprocessor = dict(num_classes=num_clusters)

# VISSL's fit-step augmentation: random resized crop, colour jitter, flip
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=5,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='data/imagenet',
        data_prefix='train',
        ann_file='{{ fileDirname }}/../../work_dirs/{{ fileBasenameNoExtension }}/'
        'train_clusters.txt',
        pipeline=train_pipeline))
# the cluster ids are not ImageNet classes: no validation on them
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

# VISSL: regularize_bn False (no decay on BatchNorm), regularize_bias True
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=False),
    paramwise_cfg=dict(norm_decay_mult=0.))
# VISSL's yaml lists a 5-epoch warm-up, which VISSL drops on one node (it would start at 0.1)
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs,
         milestones=[30, 60, 90, 100], gamma=0.1),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=256)
