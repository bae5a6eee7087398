# NPID++ (Misra & van der Maaten, CVPR 2020, the PIRL paper's stronger NPID baseline), ResNet-50,
# ImageNet: our NPID with VISSL's npid++_4nodes_resnet.yaml recipe (32000 negatives, 800
# epochs, cosine lr) at a quarter of its 4-node batch (lr scaled linearly).
#   bash tools/dist_train.sh configs/npid/npid-pp_r50_8xb32-800e_in1k.py 8
_base_ = ['./npid_r50_8xb32-200e_in1k.py']

max_epochs = 800
batch_size = 32  # per GPU

model = dict(
    # 32000 negatives drawn per sample (VISSL's NCEAverage draws K + 1 indices per sample)
    memory_bank=dict(num_negatives=32000, sampling='per_sample'),
    loss=dict(type='NCELoss', temperature=0.07))

# VISSL's NPID++ transforms: ColorJitter(0.4, 0.4, 0.4, 0.4), RandomResizedCrop(224) at
# torchvision's default scale (0.08, 1), RandomHorizontalFlip; no grayscale
image_pipeline = [
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    *image_pipeline,
    dict(type='PackInputs'),  # keeps sample_idx: the memory bank index
]
train_dataloader = dict(batch_size=batch_size, dataset=dict(pipeline=train_pipeline))

# VISSL: lr 0.12 for batch 1024; no weight decay on BatchNorm (regularize_bn False), decay on
# the projection's bias (regularize_bias True)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.12 * batch_size * 8 / 1024, momentum=0.9,
                   weight_decay=1e-4, nesterov=False),
    paramwise_cfg=dict(norm_decay_mult=0.))
# cosine per epoch down to 1/1000 of the start lr (VISSL: 0.12 -> 0.00012)
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min_ratio=1e-3, by_epoch=True,
         begin=0, end=max_epochs)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=256)
