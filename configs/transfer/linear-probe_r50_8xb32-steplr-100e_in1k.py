# ImageNet linear probe of an R50 checkpoint of ours: mmpretrain's linear-evaluation recipe.
#   bash tools/dist_train.sh configs/transfer/linear-probe_r50_8xb32-steplr-100e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/pirl_r50_8xb32/epoch_200.pth
_base_ = [
    'mmpretrain::mocov2/benchmarks/resnet50_8xb32-linear-steplr-100e_in1k.py',
    '../_base_/transfer/pretrained_check.py',
]
