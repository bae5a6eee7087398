# PCL v2 (Li, Zhou, Xiong & Hoi, ICLR 2021), ResNet-50, ImageNet, 8 GPUs x 32 (batch 256): the
# official main_pcl.py with --mlp --aug-plus --cos --temperature 0.2, i.e. mmpretrain's MoCo v2
# recipe with a 16384 queue, plus ProtoNCE over 25000 / 50000 / 100000 prototypes from epoch 20.
#   bash tools/dist_train.sh configs/pcl/pcl-v2_r50_8xb32-200e_in1k.py 8
_base_ = [
    'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py',
    '../_base_/default_runtime.py',  # our runtime (exact resume, guards)
]
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

num_train_images = 1281167  # one cluster id per training image and prototype set
batch_size = 32  # per GPU

model = dict(
    type='PCL',
    num_samples=num_train_images,
    num_clusters=[25000, 50000, 100000],
    num_negative_prototypes=16384,
    queue_len=16384,
    feat_dim=128,
    momentum=0.001,  # mmengine's EMA convention: 1 - 0.999
    head=dict(temperature=0.2),
    proto_loss=dict(type='ProtoNCELoss'))

# the official eval_augmentation: the clustered embeddings are of centre crops
extract_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=batch_size, drop_last=True)
custom_hooks = [
    dict(type='PCLHook', pipeline=extract_pipeline, warmup_epochs=20, interval=1, niter=20,
         nredo=5, max_points_per_centroid=1000, seed=0, batch_size=batch_size * 5,
         num_workers=8),
]
auto_scale_lr = dict(base_batch_size=256)
