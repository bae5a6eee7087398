# DINO (Caron et al., ICCV 2021) with mmpretrain's VisionTransformer ViT-S/16 on ImageNet,
# 8 GPUs x 64, 100 epochs: the official "vanilla" run (facebookresearch/dino README, main_dino.py
# defaults: tau_t 0.04 without warm-up, norm_last_layer True); boosted: ..._16xb64-300e_in1k.py.
#   bash tools/dist_train.sh configs/dino/dino_vit-small-p16_8xb64-100e_in1k.py 8
_base_ = ['./dino_r50_8xb64-100e_in1k.py']

num_local_crops = 8

model = dict(
    # DeiT-small (384 dims; mmpretrain's 'small' is a 768-dim model); drop path on the student
    backbone=dict(_delete_=True, type='VisionTransformer', arch='deit-small', img_size=224,
                  patch_size=16, drop_path_rate=0.1, out_type='cls_token', final_norm=True,
                  interpolate_mode='bicubic'),
    neck=None,
    head=dict(in_channels=384))  # the loss as the base file: tau_t 0.04, no warm-up

# the ResNet recipe's augmentations with the ViT recipe's crop scales
global_crop = dict(_base_.global_crop, crop_ratio_range=(0.4, 1.))
local_crop = dict(_base_.local_crop, crop_ratio_range=(0.05, 0.4))
global_pipeline1 = [global_crop, *_base_.global_pipeline1[1:]]
global_pipeline2 = [global_crop, *_base_.global_pipeline2[1:]]
local_pipeline = [local_crop, *_base_.local_pipeline[1:]]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 1, num_local_crops],
         transforms=[global_pipeline1, global_pipeline2, local_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=5e-4 * 64 * 8 / 256, weight_decay=0.04,
                   betas=(0.9, 0.999)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=90, eta_min=1e-6, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
    # weight decay 0.04 -> 0.4 (eta_min_ratio keeps the no-decay groups at 0)
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay', eta_min_ratio=10.0,
         T_max=100, by_epoch=True, begin=0, end=100, convert_to_iter_based=True),
]
