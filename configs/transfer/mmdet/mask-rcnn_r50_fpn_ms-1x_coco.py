# COCO detection + instance segmentation transfer: Mask R-CNN R50-FPN 1x multi-scale in the
# SSL-benchmark form (mmpretrain's BYOL benchmark config).
#   bash tools/dist_train.sh configs/transfer/mmdet/mask-rcnn_r50_fpn_ms-1x_coco.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=CKPT
_base_ = 'mmpretrain::byol/benchmarks/mask-rcnn_r50_fpn_ms-1x_coco.py'
custom_imports = dict(imports=['mmssl_ext'], allow_failed_imports=False)

model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))
custom_hooks = [dict(type='PretrainedCheckHook', require=True)]
