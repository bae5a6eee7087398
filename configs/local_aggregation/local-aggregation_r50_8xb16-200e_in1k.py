# Local Aggregation (Zhuang, Zhai & Yamins, ICCV 2019), ResNet-50, ImageNet, 8 GPUs x 16 (batch
# 128 as the official code): NPID's bank and augmentation, 10 epochs of instance recognition,
# then the LA loss with 10 k-means runs (K = 30000) of the bank every epoch.
#   bash tools/dist_train.sh configs/local_aggregation/local-aggregation_r50_8xb16-200e_in1k.py 8
_base_ = ['../npid/npid_r50_8xb32-200e_in1k.py']

num_train_images = 1281167
batch_size = 16  # per GPU
steps_per_epoch = num_train_images // 128  # 10009, the official NUM_BATCHES_PER_EPOCH

model = dict(
    _delete_=True,
    type='LocalAggregation',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=False),
    neck=dict(type='LinearNeck', in_channels=2048, out_channels=128, gap_dim=2,
              norm_cfg=None),
    memory_bank=dict(type='MemoryBank', length=num_train_images, feat_dim=128, momentum=0.5,
                     num_negatives=4096, sampling='per_sample'),
    loss=dict(type='NCELoss', temperature=0.07),  # the instance-recognition warm start
    num_clusters=[30000] * 10,
    num_background=4096,
    la_loss=dict(type='LocalAggregationLoss', temperature=0.07))

train_dataloader = dict(batch_size=batch_size)
custom_hooks = [
    dict(type='LocalAggregationHook', start_epoch=10, interval=1, niter=20, seed=1234,
         max_points_per_centroid=10000000),
]
# weight decay on every weight except BatchNorm's (the official reg_loss)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-4, nesterov=False),
    paramwise_cfg=dict(norm_decay_mult=0.0))
# the official lr_boundaries 1522000, 1895857 (steps of 128) as epochs
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[152, 189], gamma=0.1)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=200)
auto_scale_lr = dict(base_batch_size=128)
