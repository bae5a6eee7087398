# PASCAL VOC07+12 detection transfer, the PIRL paper's setting: Faster R-CNN R50-C4, 24k
# iterations, multi-scale, SyncBN trained, res5 in the RoI head (configs/transfer/README.md).
#   bash tools/dist_train.sh configs/transfer/mmdet/faster-rcnn_r50-c4_ms-24k_voc0712.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=CKPT \
#                     model.roi_head.shared_head.init_cfg.checkpoint=CKPT
_base_ = 'mmdet::pascal_voc/faster-rcnn_r50-caffe-c4_ms-18k_voc0712.py'
custom_imports = dict(
    imports=['mmssl_ext', 'mmpretrain.models.utils.res_layer_extra_norm'],
    allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    roi_head=dict(
        shared_head=dict(
            type='ResLayerExtraNorm',
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.'))))

max_iter = 24000
train_cfg = dict(max_iters=max_iter, val_interval=2000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_iter, by_epoch=False, milestones=[18000, 22000],
         gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000, max_keep_ckpts=2))

# res5 of the checkpoint goes to the RoI head, the rest to the backbone; the extra norm is new
custom_hooks = [
    dict(type='PretrainedCheckHook', require=True,
         allow_unexpected={'backbone': [r'layer4\.'],
                           'roi_head.shared_head': [r'(conv1|bn1|layer[1-3])\.']},
         allow_missing={'roi_head.shared_head': [r'norm\.']})
]
