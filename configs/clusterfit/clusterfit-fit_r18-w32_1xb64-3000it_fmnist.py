# ClusterFit fit step on Fashion-MNIST: a half-width ResNet-18 ImageClassifier trained from
# scratch on the K=100 cluster ids of N_pre's features, sized for 2 CPU cores; with PIRL as N_pre:
#   python tools/clusterfit.py run \
#       configs/clusterfit/clusterfit-fit_r18-w32_1xb64-3000it_fmnist.py \
#       --pretrained-config configs/pirl/pirl_r18-w32_1xb64-3000it_fmnist.py \
#       --checkpoint work_dirs/pirl_r18-w32_1xb64-3000it_fmnist/iter_3000.pth --k 100
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/datasets/fmnist_knn.py',
    '../_base_/default_runtime.py',  # our runtime (exact resume, guards)
]
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

num_clusters = 100  # K; `tools/clusterfit.py fit/run` set it from the cluster step
img_size = 32
batch_size = 64
max_iters = 3000

model = dict(
    backbone=dict(stem_channels=32, base_channels=32),
    # normalisation inside the model, so tools/knn_eval.py (which builds cfg.model) sees it too
    data_preprocessor=dict(
        type='ClsDataPreprocessor', num_classes=num_clusters,
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    head=dict(in_channels=256, num_classes=num_clusters, topk=(1, )))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.0),
         backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset',
        data_root={{_base_.fmnist_data_root}},
        data_prefix='train',
        # written by the cluster step into the work dir of this config
        ann_file='{{ fileDirname }}/../../work_dirs/{{ fileBasenameNoExtension }}/'
        'train_clusters.txt',
        pipeline=train_pipeline))
# pseudo labels have no validation set; evaluate the transferred backbone with kNN / linear probe
val_dataloader = None
val_evaluator = None
val_cfg = None
test_dataloader = None
test_evaluator = None
test_cfg = None

# SGD, lr 0.1 per 256 images (as the paper / VISSL), linear scaling to batch 64; cosine
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1 * batch_size / 256, momentum=0.9,
                                    weight_decay=1e-4),
                     paramwise_cfg=dict(norm_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, by_epoch=False, begin=100,
         end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=64)
